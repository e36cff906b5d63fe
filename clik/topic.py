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
# Invisible characters that creep in with copy-paste (zero-width spaces and joiners, BOM, soft
# hyphen, bidi marks): "가을\u200b신상" and "가을신상" must be one topic. Other control
# characters go too; tabs and newlines are whitespace and collapse to one space.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# Keyword lists are written without spaces ("가을신상,데일리룩,데이트룩"), as hashtags
# ("#가을신상 #데일리룩"), or one per line. These characters separate keywords; spaces do not
# (a keyword may have several words: "cropped sweatshirt", "가을 신상"), nor does "·", which joins
# the parts of one Korean keyword ("가을·겨울"). Fullwidth forms are folded by NFKC first.
_KEYWORD_SEPARATORS = re.compile(r"[,;|#\u3001\n\r\t]+")
# Dates written the common Korean and international ways: 2021-08-30, 2021.8.30, 2021. 8. 30.,
# 2021/08/30, 2021년 8월 30일, 20210830, with an optional time after (dropped: a topic is dated
# by its day). Anything else that is not a date ("2021 F/W", "추석 연휴") stays text.
_DATE = re.compile(
    r"(?P<y>\d{4})\s*(?:[-./]|년)\s*(?P<m>\d{1,2})\s*(?:[-./]|월)\s*(?P<d>\d{1,2})\s*(?:일|\.)?"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_COMPACT_DATE = re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})")


def _clean(value: Any) -> str:
    """NFKC, invisible and control characters removed; whitespace kept as it is."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return _CONTROL.sub("", _INVISIBLE.sub("", text))


def normalize_text(value: Any) -> str:
    """NFKC and collapsed whitespace, so two spellings of one topic become one string.

    NFKC also composes Hangul typed as separate jamo (NFD, as macOS file names and some input
    methods produce) into syllables, and folds fullwidth letters, digits and punctuation.
    """
    return _SPACES.sub(" ", _clean(value)).strip()


def split_keywords(value: Any) -> list[str]:
    """Keywords in their order, each normalised, empty ones and repeats dropped."""
    seen: dict[str, None] = {}
    for part in _KEYWORD_SEPARATORS.split(_clean(value)):
        keyword = _SPACES.sub(" ", part).strip()
        if keyword:
            seen.setdefault(keyword, None)
    return list(seen)


def normalize_date(value: Any) -> str:
    """ISO ``YYYY-MM-DD`` for the date spellings above; other text normalised and kept.

    A string spelt like a date that is no date (2021-13-45) is an error, not a silent topic.
    """
    text = normalize_text(value)
    match = _DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if not match:
        return text
    try:
        return _dt.date(int(match["y"]), int(match["m"]), int(match["d"])).isoformat()
    except ValueError:
        raise ValueError(f"topic date {text!r} is not a valid calendar date") from None


def normalize_topic(attrs: Mapping[str, Any], today: _dt.date | None = None) -> dict[str, str]:
    """Every known key present (missing ones empty), date defaulted to today, text normalised.

    Unknown keys are rejected: a misspelt key would otherwise be dropped without a word.
    """
    unknown = set(attrs) - set(TOPIC_KEYS)
    if unknown:
        raise ValueError(f"unknown topic attributes {sorted(unknown)}; allowed: {list(TOPIC_KEYS)}")
    topic = {key: normalize_text(attrs.get(key)) for key in TOPIC_KEYS}
    topic["date"] = normalize_date(attrs.get("date")) or (today or _dt.date.today()).isoformat()
    topic["kwds"] = ",".join(split_keywords(attrs.get("kwds")))
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
