"""Topic text: the attribute dict of an exhibition turned into the encoder's input.

Paper 4.3.2: ``[CLS] title [SEP] date [SEP] category [SEP] keywords [SEP]``. The attribute keys are
those of the original project: ``name, desc, date, cat1..cat4, kwds``. ``cat3``/``cat4`` only
feed augmentation during training; at inference the category is ``cat1 > cat2``.
"""
from __future__ import annotations

import datetime as _dt
import random
import re
import unicodedata
from typing import Any, Mapping

TOPIC_KEYS = ("name", "desc", "date", "cat1", "cat2", "cat3", "cat4", "kwds")
_SPACES = re.compile(r"\s+")


def normalize_text(value: Any) -> str:
    """NFKC and collapsed whitespace, so two spellings of one topic become one string."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return _SPACES.sub(" ", text).strip()


def normalize_topic(attrs: Mapping[str, Any], today: _dt.date | None = None) -> dict[str, str]:
    """Every known key present (missing ones empty), date defaulted to today, text normalised.

    Unknown keys are rejected: a misspelt key would otherwise be dropped without a word.
    """
    unknown = set(attrs) - set(TOPIC_KEYS)
    if unknown:
        raise ValueError(f"unknown topic attributes {sorted(unknown)}; allowed: {list(TOPIC_KEYS)}")
    topic = {key: normalize_text(attrs.get(key)) for key in TOPIC_KEYS}
    if not topic["date"]:
        topic["date"] = (today or _dt.date.today()).isoformat()
    topic["kwds"] = ",".join(k for k in (normalize_text(k) for k in topic["kwds"].split(",")) if k)
    return topic


def topic_key(attrs: Mapping[str, Any]) -> str:
    """A stable cache key for a topic: what the text tower sees, nothing else."""
    topic = normalize_topic(attrs)
    return "\x1f".join(topic[k] for k in ("name", "desc", "date", "cat1", "cat2", "kwds"))


def topic_segments(
    attrs: Mapping[str, Any], rng: random.Random | None = None, today: _dt.date | None = None
) -> list[str]:
    """The four segments (title, date, category, keywords) that the tokenizer joins with [SEP].

    With ``rng`` (training), the deeper categories cat3/cat4 are appended at random and keyword
    order is shuffled: cheap text augmentation that keeps the topic's meaning.
    """
    topic = normalize_topic(attrs, today=today)
    title = " ".join(t for t in (topic["name"], topic["desc"]) if t)
    cats = [c for c in (topic["cat1"], topic["cat2"]) if c]
    keywords = [k for k in topic["kwds"].split(",") if k]
    if rng is not None:
        for deeper in (topic["cat3"], topic["cat4"]):
            if deeper and rng.random() < 0.5:
                cats.append(deeper)
            else:
                break
        rng.shuffle(keywords)
    return [title, topic["date"], " > ".join(cats), ", ".join(keywords)]
