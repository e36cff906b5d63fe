"""Reader for the H&M raw layout (articles.csv, sales.csv, images/<article_id>.jpg) into clik-dataset/1.

Exhibitions are built the way a merchandiser's would look: one topic group
(section_name, product_type_name), a few dozen of its products, and a share of products from
other product types mixed in and flagged off-topic, so a model is judged on topic fit as well as
on attractiveness. Every random choice comes from a generator seeded with (seed, group key), so a
group's exhibitions do not change when other groups come or go (e.g. with another --min-group).
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .format import Dataset, Exhibition, Product
from .hm_korean import korean_word
from .shape import check_exhibition_shape, on_topic_count, round_half_up

ARTICLES_FILE = "articles.csv"
SALES_FILE = "sales.csv"
IMAGES_DIR = "images"
DATE = "2020-09-22"  # the last day of the transactions behind week_sales
CRITERION = "sales"

# Columns the reader uses; the raw files may hold more.
ARTICLE_COLUMNS = (
    "article_id",
    "product_type_name",
    "product_group_name",
    "graphical_appearance_name",
    "colour_group_name",
    "department_name",
    "index_group_name",
    "section_name",
    "garment_group_name",
)
SALES_COLUMNS = ("article_id", "week_sales")
# The article's garment: its colour variants share it (attrs.family, one per diverse collage).
# Optional in the raw files: article_id // 1000 is the product code otherwise (its first 7 digits).
FAMILY_COLUMN = "product_code"
CATEGORY_COLUMNS = ("index_group_name", "product_group_name", "garment_group_name", "department_name")
# Topic languages: "en" writes the article values as they are, "ko" through the tables of
# training/data/hm_korean.py (same template, same choices: only the words differ).
LANGUAGES = ("en", "ko")
# Placeholder values that say nothing about how a product looks.
_VAGUE = {"", "unknown", "undefined", "other", "nan"}


@dataclass(frozen=True)
class HMOptions:
    min_group: int = 20  # sold articles a group needs to become a topic
    size: int = 50  # products per exhibition, on- and off-topic together
    offtopic: float = 0.2  # share of off-topic products in an exhibition
    test_frac: float = 0.1  # share of topic groups in the test split
    seed: int = 0
    include_unsold: bool = True  # unsold group members join exhibitions with sales 0
    n_colours: int = 3  # keyword budget: most frequent colours ...
    n_appearances: int = 2  # ... and graphical appearances of the on-topic products
    language: str = "en"  # topic language, one of LANGUAGES

    def __post_init__(self) -> None:
        if self.min_group < 1:
            raise ValueError(f"min_group must be >= 1, got {self.min_group}")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {list(LANGUAGES)}, got {self.language!r}")
        check_exhibition_shape(self.size, self.offtopic, self.test_frac)

    @property
    def on_per_exhibition(self) -> int:
        return on_topic_count(self.size, self.offtopic)


@dataclass
class HMSummary:
    articles: int = 0
    missing_images: int = 0  # articles skipped because images/<id>.jpg does not exist
    missing_sales: int = 0  # articles absent from sales.csv, counted as 0 sales
    groups: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    exhibitions: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    products: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    offtopic_products: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    unsold_on_topic: int = 0
    skipped_exhibitions: int = 0  # chunks with no sold on-topic product or < 2 products
    # language "ko": "column: value" -> topics that kept the English word (not in the tables)
    untranslated: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        total = sum(self.products.values())
        off = sum(self.offtopic_products.values())
        out = [
            f"articles read: {self.articles} (skipped, image missing: {self.missing_images}; "
            f"not in {SALES_FILE}, counted as 0 sales: {self.missing_sales})",
            f"topic groups: {sum(self.groups.values())} (train {self.groups['train']}, test {self.groups['test']})",
        ]
        for split in ("train", "test"):
            n = self.products[split]
            share = self.offtopic_products[split] / n if n else 0.0
            out.append(
                f"{split:>5}: {self.exhibitions[split]} exhibitions, {n} products, "
                f"{self.offtopic_products[split]} off-topic ({share:.1%})"
            )
        out.append(
            f"total: {sum(self.exhibitions.values())} exhibitions, {total} products, "
            f"off-topic share {off / total if total else 0.0:.1%}, unsold on-topic {self.unsold_on_topic}"
        )
        if self.skipped_exhibitions:
            out.append(f"skipped {self.skipped_exhibitions} exhibitions with no sold on-topic product or < 2 products")
        if self.untranslated:
            words = ", ".join(f"{w} ({n})" for w, n in sorted(self.untranslated.items()))
            out.append(f"kept in English (not in training/data/hm_korean.py): {words}")
        return out


def read_hm_tables(raw_dir: str | Path, summary: HMSummary | None = None) -> pd.DataFrame:
    """Articles joined with their sales and image path; articles without an image file dropped."""
    raw = Path(raw_dir)
    summary = summary if summary is not None else HMSummary()
    articles = _read_csv(raw / ARTICLES_FILE, ARTICLE_COLUMNS, optional=(FAMILY_COLUMN,))
    sales = _read_csv(raw / SALES_FILE, SALES_COLUMNS)
    articles = _check_ids(articles, raw / ARTICLES_FILE)
    sales = _check_ids(sales, raw / SALES_FILE)

    week = pd.to_numeric(sales["week_sales"], errors="coerce")
    bad = week.isna() | (week < 0) | (week != week.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{raw / SALES_FILE}:{i + 2}: field 'week_sales': expected a count >= 0, "
            f"got {sales['week_sales'].iloc[i]!r}"
        )
    sales = sales.assign(week_sales=week.astype(np.int64))

    df = articles.merge(sales, on="article_id", how="left")
    summary.missing_sales = int(df["week_sales"].isna().sum())
    df["week_sales"] = df["week_sales"].fillna(0).astype(np.int64)
    for col in ARTICLE_COLUMNS[1:]:
        df[col] = df[col].fillna("").str.strip()
    if FAMILY_COLUMN not in df.columns:
        df[FAMILY_COLUMN] = [str(int(a) // 1000) for a in df["article_id"]]
    df[FAMILY_COLUMN] = df[FAMILY_COLUMN].fillna("").str.strip()

    images = raw / IMAGES_DIR
    # Absolute paths: the dataset points at the raw images instead of copying ~10k files.
    df["image"] = [str((images / f"{a}.jpg").resolve()) for a in df["article_id"]]
    has_image = np.array([Path(p).is_file() for p in df["image"]], dtype=bool)
    summary.articles = len(df)
    summary.missing_images = int((~has_image).sum())
    return df[has_image].reset_index(drop=True)


def _read_csv(path: Path, columns: Iterable[str], optional: Iterable[str] = ()) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (H&M raw layout: {ARTICLES_FILE}, {SALES_FILE}, {IMAGES_DIR}/)")
    # dtype=str everywhere: article ids are 10-digit text whose leading zero must survive.
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}:1: missing columns {missing}")
    return df[list(columns) + [c for c in optional if c in df.columns]]


def _check_ids(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    ids = df["article_id"].str.strip()
    bad = ~ids.str.fullmatch(r"\d{10}")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path}:{i + 2}: field 'article_id': expected 10 digits, got {df['article_id'].iloc[i]!r} "
            "(leading zeros lost by a spreadsheet?)"
        )
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{path}:{i + 2}: field 'article_id': duplicate id {ids.iloc[i]!r}")
    return df.assign(article_id=ids)


def build_hm_dataset(raw_dir: str | Path, options: HMOptions | None = None) -> tuple[Dataset, HMSummary]:
    """Turn the raw H&M layout into a Dataset; nothing is written."""
    options = options if options is not None else HMOptions()
    summary = HMSummary()
    df = read_hm_tables(raw_dir, summary)
    df = df.sort_values("article_id", kind="stable").reset_index(drop=True)  # row order must not matter
    sold = df["week_sales"] >= 1
    counts = df[sold].groupby(["section_name", "product_type_name"]).size()
    keys = sorted(f"{s}|{t}" for (s, t), n in counts.items() if n >= options.min_group)
    test_keys = _test_groups(keys, options)

    pool = df if options.include_unsold else df[sold]
    exhibitions: list[Exhibition] = []
    used_ids: set[str] = set()
    for key in keys:
        section, ptype = key.split("|", 1)
        split = "test" if key in test_keys else "train"
        summary.groups[split] += 1
        in_group = (pool["section_name"] == section) & (pool["product_type_name"] == ptype)
        others = pool[pool["product_type_name"] != ptype]
        rng = _rng(options.seed, key)
        for k, members in enumerate(_chunks(pool[in_group], rng, options), start=1):
            ex = _exhibition(key, k, members, others, split, rng, options, used_ids, summary)
            if ex is None:
                summary.skipped_exhibitions += 1
                continue
            exhibitions.append(ex)
            summary.exhibitions[split] += 1
            summary.products[split] += len(ex.products)
            summary.offtopic_products[split] += sum(not p.on_topic for p in ex.products)
            summary.unsold_on_topic += sum(p.on_topic and p.criteria[CRITERION] == 0 for p in ex.products)

    dataset = Dataset(
        name="hm",
        criteria=[CRITERION],
        default_criterion=CRITERION,
        source=f"H&M Personalized Fashion Recommendations, last week 2020-09-16..22 (raw: {Path(raw_dir).resolve()})",
        exhibitions=exhibitions,
        meta={"reader": "clik data hm", **asdict(options)},
    )
    return dataset, summary


def _chunks(members: pd.DataFrame, rng: np.random.Generator, options: HMOptions) -> list[pd.DataFrame]:
    """Split a group's members into ceil(n / on_per_exhibition) nearly equal chunks.

    Sold and unsold members are shuffled separately and dealt round-robin, sold first, so each
    chunk gets its fair share of sold products and none is left with only zeros (no best image).
    """
    sold = members[members["week_sales"] >= 1]
    unsold = members[members["week_sales"] < 1]
    order = np.concatenate(
        [sold.index.to_numpy()[rng.permutation(len(sold))], unsold.index.to_numpy()[rng.permutation(len(unsold))]]
    )
    n_chunks = math.ceil(len(order) / options.on_per_exhibition)
    return [members.loc[order[i::n_chunks]] for i in range(n_chunks)]


def _exhibition(
    key: str,
    k: int,
    members: pd.DataFrame,
    others: pd.DataFrame,
    split: str,
    rng: np.random.Generator,
    options: HMOptions,
    used_ids: set[str],
    summary: HMSummary,
) -> Exhibition | None:
    n_on = len(members)
    # n_off / (n_on + n_off) = offtopic, capped so the exhibition stays within --size
    n_off = min(round_half_up(n_on * options.offtopic / (1.0 - options.offtopic)), options.size - n_on, len(others))
    if n_on + n_off < 2 or not (members["week_sales"] >= 1).any():
        return None
    off = others.iloc[np.sort(rng.choice(len(others), size=n_off, replace=False))]
    products = [_product(row, True) for row in members.itertuples()]
    products += [_product(row, False) for row in off.itertuples()]
    # Shuffled so that position says nothing about the flag or the sales.
    products = [products[i] for i in rng.permutation(len(products))]
    section, ptype = key.split("|", 1)
    say = _Words(options.language, summary)
    return Exhibition(
        id=_unique_id(f"hm-{_slug(section)}-{_slug(ptype)}-{k:02d}", used_ids),
        group=key,  # the key stays English in every language: it names the group, not the topic
        split=split,
        topic={
            "name": f"{say('section_name', section)} {say('product_type_name', ptype)}",
            "desc": "",
            "date": DATE,
            **_categories(members, say),
            "kwds": _keywords(members, options, say),
        },
        products=products,
    )


class _Words:
    """Article values in the topic language; a value the Korean tables lack stays English and is
    counted in the summary."""

    def __init__(self, language: str, summary: HMSummary):
        self.language = language
        self.summary = summary

    def __call__(self, column: str, value: str) -> str:
        if self.language == "en" or not value:
            return value
        word = korean_word(column, value)
        if word is None:
            name = f"{column}: {value}"
            self.summary.untranslated[name] = self.summary.untranslated.get(name, 0) + 1
            return value
        return word


def _product(row, on_topic: bool) -> Product:
    family = getattr(row, FAMILY_COLUMN)
    return Product(
        id=row.article_id,
        image=row.image,
        criteria={CRITERION: float(row.week_sales)},
        on_topic=on_topic,
        attrs={"family": family} if family else {},
    )


def _categories(members: pd.DataFrame, say: _Words) -> dict[str, str]:
    return {
        f"cat{i}": say(col, (_most_frequent(members[col], 1) or [""])[0])
        for i, col in enumerate(CATEGORY_COLUMNS, start=1)
    }


def _keywords(members: pd.DataFrame, options: HMOptions, say: _Words) -> str:
    # Chosen and de-duplicated on the English values (counts, alphabetical ties), then put into
    # the topic language, so both languages keep the same keywords.
    words = [("colour_group_name", w) for w in _most_frequent(members["colour_group_name"], options.n_colours)]
    words += [
        ("graphical_appearance_name", w)
        for w in _most_frequent(members["graphical_appearance_name"], options.n_appearances)
    ]
    seen: list[tuple[str, str]] = []
    for column, w in words:
        if w.lower() not in {s.lower() for _, s in seen}:
            seen.append((column, w))
    return ",".join(say(column, w) for column, w in seen)


def _most_frequent(values: pd.Series, n: int) -> list[str]:
    """Top n values by count, ties broken alphabetically so the result does not hang on row order."""
    counts = Counter(v for v in values if v.lower() not in _VAGUE)
    return [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _test_groups(keys: list[str], options: HMOptions) -> set[str]:
    """A seeded share of topic groups for test: splitting by group keeps test topics unseen."""
    if options.test_frac <= 0 or not keys:
        return set()
    n_test = min(len(keys), max(1, round_half_up(len(keys) * options.test_frac)))
    rng = np.random.default_rng([options.seed, 0])
    return {keys[i] for i in rng.choice(len(keys), size=n_test, replace=False)}


def _rng(seed: int, key: str) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process, which would break determinism.
    return np.random.default_rng([seed, 1, zlib.crc32(key.encode("utf-8"))])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _unique_id(base: str, used: set[str]) -> str:
    candidate, n = base, 2
    while candidate in used:  # two group keys may slug alike ("H&M" vs "H M")
        candidate, n = f"{base}-{n}", n + 1
    used.add(candidate)
    return candidate
