"""A dataset split turned into index tables the samplers and encoders share."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from clik.model import ClikModel
from clik.tokenize import TopicTokenizer

from .data.format import Dataset
from .features import image_features, image_stem_features, text_features
from .sampling import PreparedGroup


@dataclass
class PreparedSplit:
    groups: list[PreparedGroup]
    topics: list[dict]  # topic attributes, by topic row
    topic_texts: list[str]  # the encoder input of each topic row (no augmentation)
    images: list[str]  # image sources, by image row
    product_ids: list[list[str]]  # per group, aligned with image_rows
    dropped: dict[str, str]  # image source → why it was left out


def prepare_split(
    dataset: Dataset, split: str, tokenizer: TopicTokenizer, criterion: str | None = None
) -> PreparedSplit:
    criterion = criterion or dataset.default_criterion
    exhibitions = dataset.split(split)
    if not exhibitions:
        raise ValueError(f"the dataset has no exhibitions in split {split!r}")
    topic_rows: dict[str, int] = {}
    topics: list[dict] = []
    texts: list[str] = []
    image_rows: dict[str, int] = {}
    groups: list[PreparedGroup] = []
    product_ids: list[list[str]] = []
    for ex in exhibitions:
        text = tokenizer.text(ex.topic)
        if text not in topic_rows:
            topic_rows[text] = len(texts)
            texts.append(text)
            topics.append(dict(ex.topic))
        rows = []
        for product in ex.products:
            source = dataset.resolve_image(ex, product)
            rows.append(image_rows.setdefault(source, len(image_rows)))
        groups.append(
            PreparedGroup(
                exhibition_id=ex.id,
                group=ex.group,
                topic_row=topic_rows[text],
                image_rows=np.asarray(rows),
                labels=np.asarray(ex.labels(criterion), dtype=np.float64),
                on_topic=np.asarray([p.on_topic for p in ex.products], dtype=bool),
            )
        )
        product_ids.append([p.id for p in ex.products])
    return PreparedSplit(groups, topics, texts, list(image_rows), product_ids, {})


def without_groups(split: PreparedSplit, groups: frozenset[str]) -> PreparedSplit:
    """The split less the exhibitions of these topic groups (held out for calibration)."""
    keep = [i for i, g in enumerate(split.groups) if g.group not in groups]
    return PreparedSplit(
        [split.groups[i] for i in keep],
        split.topics,
        split.topic_texts,
        split.images,
        [split.product_ids[i] for i in keep],
        split.dropped,
    )


def drop_unreadable(split: PreparedSplit, readable: set[int], errors: dict[str, str]) -> PreparedSplit:
    """Remove products whose image could not be read (each with its reason kept) and groups left
    with fewer than two products."""
    groups, ids = [], []
    for g, pids in zip(split.groups, split.product_ids):
        keep = np.asarray([r in readable for r in g.image_rows], dtype=bool)
        if keep.sum() < 2 or not g.on_topic[keep].any():
            continue
        groups.append(
            PreparedGroup(g.exhibition_id, g.group, g.topic_row, g.image_rows[keep], g.labels[keep], g.on_topic[keep])
        )
        ids.append([p for p, k in zip(pids, keep) if k])
    return PreparedSplit(groups, split.topics, split.topic_texts, split.images, ids, dict(errors))


@dataclass
class SplitFeatures:
    """Backbone features of a split, row-aligned with its tables; unreadable products dropped."""

    split: PreparedSplit
    images: np.ndarray  # (len(split.images), F); rows of unreadable images stay zero and unused
    topics: np.ndarray  # (len(split.topic_texts), T)


def split_features(
    model: ClikModel,
    tokenizer: TopicTokenizer,
    split: PreparedSplit,
    cache_dir: str,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> SplitFeatures:
    """Cached backbone features of every image and topic row (computed only where missing)."""
    feats = image_features(model, split.images, cache_dir, batch_size, device, progress=progress)
    topic_lookup = text_features(model, tokenizer, split.topic_texts, cache_dir, batch_size, device)
    readable = sorted(i for i, s in enumerate(split.images) if s in feats.hashes)
    images = np.zeros((len(split.images), feats.cache.dim), np.float32)
    if readable:
        images[readable] = feats.of([split.images[i] for i in readable])
    return SplitFeatures(drop_unreadable(split, set(readable), feats.errors), images, topic_lookup(split.topic_texts))


def split_stems(
    model: ClikModel,
    split: PreparedSplit,
    cache_dir: str,
    top_stages: int,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> SplitFeatures:
    """Partial mode: cached stem activations of every image row (float16, (rows, C, H, W));
    unreadable products dropped. `topics` is left empty: topic states are computed by the caller."""
    stems = image_stem_features(model, split.images, cache_dir, top_stages, batch_size, device, progress=progress)
    readable = sorted(i for i, s in enumerate(split.images) if s in stems.features.hashes)
    images = np.zeros((len(split.images), *stems.shape), np.float16)
    if readable:
        images[readable] = stems.of([split.images[i] for i in readable])
    return SplitFeatures(
        drop_unreadable(split, set(readable), stems.features.errors), images, np.zeros((0, 0), np.float32)
    )
