"""The steps of `clik demo`, each usable alone: catalogue → training → bundle → store + API →
catalogue loaded over HTTP → representative images. Everything runs in this process on the
embedded store (no Redis, no Celery), the way a team would first try the system."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoCatalogue:
    """The demo's catalogue on disk: its dataset folder and where its images may be read from."""

    data_dir: Path
    image_roots: tuple[Path, ...]  # where product images live: the only folders workers may read
    synthetic: bool


def build_catalogue(workdir: Path, raw_dir: Path | None, echo: Echo, small: bool = False) -> DemoCatalogue:
    from training.data.format import write_dataset

    data_dir = workdir / "data"
    if raw_dir is None:
        from training.data.synthetic import SyntheticOptions, build_synthetic_dataset

        options = SyntheticOptions(products_per_group=8, exhibitions_per_group=1, size=10) if small else None
        dataset = build_synthetic_dataset(data_dir, options)
        echo(
            f"   SYNTHETIC catalogue (drawn silhouettes, made-up sales; pass --data for real data): "
            f"{len(dataset.exhibitions)} exhibitions"
        )
        roots: tuple[Path, ...] = (data_dir.resolve(),)
    else:
        from training.data.hm import HMOptions, build_hm_dataset

        dataset, summary = build_hm_dataset(raw_dir, HMOptions())
        for line in summary.lines():
            echo(f"   {line}")
        roots = (raw_dir.resolve(), data_dir.resolve())
    write_dataset(dataset, data_dir)
    return DemoCatalogue(data_dir, roots, raw_dir is None)


def train_model(catalogue: DemoCatalogue, workdir: Path, epochs: float, echo: Echo) -> Path:
    """Locked-tower CLIK (backbones frozen, their features cached; projections and heads trained):
    minutes on a CPU. The settings are those of configs/hm-locked.yaml."""
    from training.config import TrainConfig
    from training.evaluate import evaluate
    from training.trainer import train

    cfg = TrainConfig(
        model="clik-minilm-lite0",
        method="clik",
        query="group",
        mode="locked",
        tm_batch=512,
        memory_bank_size=512,
        groups_per_batch=12,
        images_per_group=20,
        epochs=epochs,
        lr=1e-3,
        cache_dir=str(workdir / "features"),
    )
    run_dir = workdir / "run"
    train(catalogue.data_dir, cfg, run_dir)
    result = evaluate(run_dir, catalogue.data_dir, bootstrap_samples=0, cache_dir=cfg.cache_dir)
    m, r = result["metrics"], result["random"]
    echo(
        f"   held-out topics ({result['groups']} exhibitions): MRR {m['MRR']:.3f} (random {r['MRR']:.3f}), "
        f"Top1-Top1 {m['Top1-Top1']:.3f} (random {r['Top1-Top1']:.3f}), "
        f"off-topic@1 {m['offtopic@1']:.3f}, off-topic@10 {m['offtopic@10']:.3f} (share {result['offtopic_share']:.3f})"
    )
    return run_dir


def export_model(run_dir: Path, workdir: Path):
    import clik

    from training.calibrate import read_calibration

    model, tokenizer, _ = clik.load_checkpoint(run_dir / "checkpoint")
    calibration = read_calibration(run_dir)  # fitted by training: the bundle carries it
    return clik.export_bundle(
        model.eval(), tokenizer, workdir / "models" / "demo", topic_fit=calibration.to_dict() if calibration else None
    )


def activate(store, info, roots: tuple[Path, ...], echo: Echo) -> None:
    """Register the bundle and make it the active version (re-indexing what an earlier run left)."""
    from worker.encode import EncoderCache
    from worker.reindex import run_reindex

    from clik_cli.single_machine import fetch_limits
    from indexer.store_settings import remember_file_roots

    # Recorded in the store: later commands on it (`clik models activate`, `clik serve`) read
    # the same images without being told where they are.
    remember_file_roots(store, roots)
    store.register_version(info.version, info.embed_dim, bundle_uri=str(info.path.resolve()))
    progress = run_reindex(store, info.version, EncoderCache("cpu", 16, 1), fetch_limits(store))
    if progress.state not in ("switched", "done"):
        # an earlier demo's catalogue this model could not cover: say why, change nothing
        raise RuntimeError(progress.decision)
    echo(f"   active model version {info.version[:16]} ({progress.done} images re-encoded)")


def load_catalogue(
    base_url: str, api_key: str, catalogue: DemoCatalogue, queue, counter, echo: Echo
) -> dict[str, dict]:
    """PUT every product and exhibition through the API, then wait for the encodes.
    Returns {exhibition id: {"topic", "best"}} of the test split (held-out topics)."""
    import httpx
    from tqdm import tqdm

    from training.data.format import load_dataset

    dataset = load_dataset(catalogue.data_dir)
    products: dict[str, dict] = {}
    for ex in dataset.exhibitions:
        for p in ex.products:
            products.setdefault(
                p.id,
                {"product_id": p.id, "image_url": dataset.resolve_image(ex, p), "attrs": {**p.criteria, **p.attrs}},
            )
    headers = {"X-API-Key": api_key}
    items = list(products.values())
    started = time.monotonic()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for i in range(0, len(items), 500):
            client.put("/products", json={"products": items[i : i + 500]}).raise_for_status()
        for ex in dataset.exhibitions:
            client.put(
                f"/exhibitions/{ex.id}",
                json={"topic": {k: v for k, v in ex.topic.items() if v}, "product_ids": [p.id for p in ex.products]},
            ).raise_for_status()
        with tqdm(total=len(items), desc="   encoding images", unit="img") as bar:
            while not queue.join(timeout=0.5):
                bar.n = min(counter.done, len(items))
                bar.refresh()
            bar.n = len(items)
            bar.refresh()
    echo(
        f"   {len(items)} products and {len(dataset.exhibitions)} exhibitions loaded over HTTP and encoded "
        f"in {time.monotonic() - started:.0f}s"
    )
    return {
        ex.id: {"topic": ex.topic, "best": ex.products[ex.best_index(dataset.default_criterion)].id}
        for ex in dataset.split("test")
    }


def show_representatives(base_url: str, exhibitions: dict[str, dict], count: int, echo: Echo) -> None:
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as client:
        for ex_id in list(exhibitions)[:count]:
            started = time.perf_counter()
            r = client.get(f"/exhibitions/{ex_id}/representative", params={"topk": 3})
            ms = (time.perf_counter() - started) * 1000
            r.raise_for_status()
            body = r.json()
            top = ", ".join(
                f"{it['product_id']} ({it['score']:+.3f}{', off-topic?' if it['off_topic'] else ''})"
                for it in body["items"]
            )
            best = exhibitions[ex_id]["best"]
            echo(f"   {exhibitions[ex_id]['topic'].get('name', ex_id)!r}: {top}  [{ms:.1f} ms]")
            echo(
                f"      best seller: {best}{'  ✓ picked first' if body['items'] and body['items'][0]['product_id'] == best else ''}"
                f"   {base_url}/ui#/exhibitions/{ex_id}"
            )


def new_api_key() -> str:
    return "demo-" + secrets.token_urlsafe(12)
