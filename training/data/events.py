"""CTR labels from logged shopper events: the paper's Data Type II (CTR as the engagement
criterion), built from what the service itself logged, as a ``clik-dataset/1``.

Per (exhibition, product): impressions n and clicks c summed over every arm and model version.
The label is the CTR shrunk towards the catalogue's CTR (an empirical-Bayes beta prior worth
``smoothing`` impressions): ``ctr = (c + smoothing * global_ctr) / (n + smoothing)``, so three
clicks in ten impressions do not outrank 300 in 3,000. Products with fewer than
``min_impressions`` impressions are left out (their CTR is noise), and so are exhibitions left
with fewer than two products. Splits are by exhibition (each is its own topic group), drawn from
a hash of (seed, id): the same events give the same dataset.

No store access here (training/ imports only clik/): the caller hands in the counts and the
exhibitions' topics and images (`clik data events` reads them from the store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from clik.topic import TOPIC_KEYS

from .format import Dataset, Exhibition, Product


@dataclass(frozen=True)
class CtrOptions:
    min_impressions: int = 100
    smoothing: float = 20.0  # pseudo-impressions at the global CTR
    test_frac: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_impressions < 1 or self.smoothing < 0 or not 0 <= self.test_frac <= 1:
            raise ValueError("min_impressions >= 1, smoothing >= 0 and 0 <= test_frac <= 1")


@dataclass(frozen=True)
class ListedExhibition:
    exhibition_id: str
    topic: Mapping[str, str]
    products: Sequence[tuple[str, str]]  # (product id, image path or URL), in listed order


def count_events(events: Iterable[Mapping]) -> dict[tuple[str, str], list[int]]:
    """(exhibition, product) -> [impressions, clicks]; each event_id counted once."""
    seen: set[str] = set()
    out: dict[tuple[str, str], list[int]] = {}
    for e in events:
        event_id = e.get("event_id")
        kind = e.get("type")
        if kind not in ("impression", "click") or event_id in seen:
            continue
        seen.add(str(event_id))
        row = out.setdefault((str(e["exhibition_id"]), str(e["product_id"])), [0, 0])
        row[0 if kind == "impression" else 1] += 1
    return out


def _split(exhibition_id: str, options: CtrOptions) -> str:
    h = int.from_bytes(hashlib.blake2b(f"{options.seed}|{exhibition_id}".encode(), digest_size=8).digest(), "big")
    return "test" if h / 2.0**64 < options.test_frac else "train"


def ctr_dataset(
    counts: Mapping[tuple[str, str], Sequence[int]],
    exhibitions: Iterable[ListedExhibition],
    options: CtrOptions = CtrOptions(),
    name: str = "events",
    source: str = "",
) -> Dataset:
    total_n = sum(v[0] for v in counts.values())
    total_c = sum(min(v[1], v[0]) for v in counts.values())
    global_ctr = total_c / total_n if total_n else 0.0
    out = []
    for ex in exhibitions:
        products = []
        for pid, image in ex.products:
            n, c = counts.get((ex.exhibition_id, pid), (0, 0))
            c = min(c, n)  # a click without its impression (lost client-side) is not a CTR above 1
            if n < options.min_impressions:
                continue
            ctr = (c + options.smoothing * global_ctr) / (n + options.smoothing)
            products.append(Product(pid, image, {"ctr": ctr, "clicks": float(c), "impressions": float(n)}))
        if len(products) < 2:
            continue
        topic = {k: str(v) for k, v in ex.topic.items() if k in TOPIC_KEYS}
        out.append(Exhibition(ex.exhibition_id, ex.exhibition_id, _split(ex.exhibition_id, options), topic, products))
    meta = {
        "min_impressions": options.min_impressions,
        "smoothing": options.smoothing,
        "global_ctr": global_ctr,
        "impressions": total_n,
        "clicks": total_c,
        "test_frac": options.test_frac,
        "seed": options.seed,
    }
    return Dataset(
        name, ["ctr", "clicks", "impressions"], "ctr", source or "clik data events: logged shopper events", out, meta
    )


ENGAGEMENT = "engagement"  # the criterion of a dataset with the original labels added


def with_original_labels(logged: Dataset, original: Dataset) -> Dataset:
    """The CTR dataset plus the train exhibitions of the dataset the served model learnt from.

    A dozen clicks per exhibition, concentrated on what the policies showed, are too few labels
    to learn the ranking from; kept beside the exact labels the first model had (sales, with
    their off-topic flags, which the topic-fit calibration needs), they add the shoppers' view of
    new exhibitions without losing the old. The label both share is `engagement`: the original's
    default criterion on its exhibitions, the smoothed CTR elsewhere. The ranking loss compares
    products within an exhibition only, so the two scales never meet. An exhibition in both keeps
    its original labels; the original's test exhibitions stay out (they are its evaluation)."""
    if original.data_dir is None:
        raise ValueError("the original dataset must be loaded from its folder (its images are relative to it)")
    criterion = original.default_criterion
    out, taken = [], set()
    for ex in original.split("train"):
        taken.add(ex.id)
        products = [
            Product(
                p.id,
                ex.resolve_image(p, original.data_dir),
                {ENGAGEMENT: float(p.criteria[criterion])},
                p.on_topic,
                dict(p.attrs),
            )
            for p in ex.products
        ]
        out.append(Exhibition(ex.id, ex.group, "train", dict(ex.topic), products))
    logged_kept = 0
    for ex in logged.exhibitions:
        if ex.id in taken:
            continue
        logged_kept += 1
        products = [
            Product(p.id, p.image, {**p.criteria, ENGAGEMENT: p.criteria["ctr"]}, p.on_topic, dict(p.attrs))
            for p in ex.products
        ]
        out.append(Exhibition(ex.id, ex.group, ex.split, dict(ex.topic), products))
    meta = {
        **logged.meta,
        "original": original.name,
        "original_criterion": criterion,
        "original_exhibitions": len(taken),
        "logged_exhibitions": logged_kept,
    }
    return Dataset(
        logged.name,
        [ENGAGEMENT, *logged.criteria],
        ENGAGEMENT,
        f"{logged.source} + the train labels of {original.name} ({criterion})",
        out,
        meta,
    )
