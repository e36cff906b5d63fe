"""Tokenizer wrapper: topic segments → padded token ids for the text tower."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .topic import topic_segments

# Beside the tokenizer's own files: how topics are written for this text tower (e.g. e5's
# "query: " prefix). Absent means the defaults, so MiniLM bundles stay byte-identical (a new
# file would change their content hash, hence their model version, hence force a re-index).
TOPIC_FORMAT_FILE = "topic_tokenizer.json"


def write_topic_format(directory: str | Path, prefix: str = "", separator: str | None = None) -> None:
    data = {"prefix": prefix, "separator": separator}
    Path(directory, TOPIC_FORMAT_FILE).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_topic_format(directory: str | Path) -> dict[str, Any]:
    path = Path(directory, TOPIC_FORMAT_FILE)
    if not path.exists():
        return {"prefix": "", "separator": None}
    data = json.loads(path.read_text())
    unknown = set(data) - {"prefix", "separator"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return {"prefix": data.get("prefix") or "", "separator": data.get("separator")}


class TopicTokenizer:
    """Builds ``[CLS] title [SEP] date [SEP] category [SEP] keywords [SEP]`` token batches.

    The tokenizer adds the outer ``[CLS]``/final ``[SEP]`` itself; the inner separators use its own
    separator token, so the same code serves BERT (``[SEP]``) and XLM-R style (``</s>``) vocabularies.
    ``prefix`` goes in front of the whole topic: e5 models were trained with ``query: `` there.
    Batches are padded to their longest member, not to ``max_length``: attention masks make the
    result identical to the paper's fixed 128-token padding, at a fraction of the cost.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_length: int = 128, prefix: str = "", separator: str | None = None
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix = prefix
        self.separator = separator
        if separator is not None:
            self.sep = separator
        else:
            self.sep = f" {tokenizer.sep_token} " if tokenizer.sep_token else " | "

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, max_length: int = 128) -> "TopicTokenizer":
        fmt = read_topic_format(name_or_path) if Path(name_or_path).is_dir() else {}
        return cls(AutoTokenizer.from_pretrained(str(name_or_path)), max_length=max_length, **fmt)

    def text(self, attrs: Mapping[str, Any], rng: random.Random | None = None) -> str:
        """The exact string the text tower reads (prefix included): also the feature-cache key."""
        return self.prefix + self.sep.join(topic_segments(attrs, rng=rng))

    def __call__(
        self, topics: Sequence[Mapping[str, Any]], rng: random.Random | None = None
    ) -> dict[str, torch.Tensor]:
        texts = [self.text(t, rng=rng) for t in topics]
        return self.encode_texts(texts)

    def encode_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokens for texts as given: formatted by ``text`` already (no prefix added here)."""
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: batch[k] for k in ("input_ids", "attention_mask")}

    def save(self, directory: str | Path) -> None:
        # A fast tokenizer keeps the padding and truncation of its last call and writes them into
        # tokenizer.json; encode_texts passes both on every call, so they are dropped here: else the
        # bundle's content hash (its version) changed with whatever was tokenized before the export.
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            backend.no_padding()
            backend.no_truncation()
        self.tokenizer.save_pretrained(str(directory))
        if self.prefix or self.separator is not None:
            write_topic_format(directory, self.prefix, self.separator)
