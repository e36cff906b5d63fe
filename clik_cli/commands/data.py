from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Build datasets in the project's format (clik-dataset/1, see docs/dataset.md).",
    no_args_is_help=True,
)


@app.command("hm")
def hm(
    raw_dir: Path = typer.Argument(..., help="H&M raw layout: articles.csv, sales.csv, images/<article_id>.jpg."),
    out_dir: Path = typer.Argument(..., help="Dataset folder to write (dataset.json, exhibitions.jsonl)."),
    min_group: int = typer.Option(
        20, min=1, help="Sold articles a (section, product type) group needs to become a topic."
    ),
    size: int = typer.Option(50, min=2, help="Products per exhibition, off-topic ones included."),
    offtopic: float = typer.Option(
        0.2, min=0.0, max=0.99, help="Share of off-topic products mixed into each exhibition."
    ),
    test_frac: float = typer.Option(0.1, min=0.0, max=1.0, help="Share of topic groups in the test split (1.0: all)."),
    seed: int = typer.Option(0, help="Seed of every random choice; same seed, same dataset."),
    unsold: bool = typer.Option(
        True, "--unsold/--sold-only", help="Let unsold articles of a group join its exhibitions with sales 0."
    ),
    language: str = typer.Option(
        "en",
        help="Topic language: en (the article values) or ko (Korean, from "
        "training/data/hm_korean.py; same exhibitions, only the topic words differ).",
    ),
) -> None:
    """Turn the H&M raw layout into a clik dataset (images are referenced, not copied).

    Example: clik data hm ../shared/data/hm /tmp/hm-data --seed 0
    """
    from training.data.format import write_dataset
    from training.data.hm import HMOptions, build_hm_dataset

    try:
        options = HMOptions(
            min_group=min_group,
            size=size,
            offtopic=offtopic,
            test_frac=test_frac,
            seed=seed,
            include_unsold=unsold,
            language=language,
        )
        dataset, summary = build_hm_dataset(raw_dir, options)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if not dataset.exhibitions:
        typer.echo(f"error: no topic group has {min_group} sold articles with images in {raw_dir}", err=True)
        raise typer.Exit(1)
    write_dataset(dataset, out_dir)
    for line in summary.lines():
        typer.echo(line)
    typer.echo(f"wrote {out_dir}")


@app.command("synthetic")
def synthetic(
    out_dir: Path = typer.Argument(..., help="Dataset folder to write (dataset.json, exhibitions.jsonl, images/)."),
    products_per_group: int = typer.Option(24, min=2, help="Distinct products per (colour, kind) topic group."),
    exhibitions_per_group: int = typer.Option(2, min=1, help="Exhibitions drawn per topic group."),
    size: int = typer.Option(20, min=2, help="Products per exhibition, off-topic ones included."),
    offtopic: float = typer.Option(0.2, min=0.0, max=0.99, help="Share of off-topic products in each exhibition."),
    test_frac: float = typer.Option(0.2, min=0.0, max=1.0, help="Share of topic groups in the test split."),
    seed: int = typer.Option(0, help="Seed of every random choice; same seed, same catalogue."),
) -> None:
    """Draw a small SYNTHETIC catalogue (silhouettes of clothes with a made-up sales signal).

    For demos and smoke runs on a machine without real data: 30 topic groups such as "Red bags";
    a large, centred item on a plain background sells more. Not real data, and labelled so.

    Example: clik data synthetic /tmp/synthetic --seed 0
    """
    from training.data.format import write_dataset
    from training.data.synthetic import SyntheticOptions, build_synthetic_dataset

    try:
        options = SyntheticOptions(
            products_per_group=products_per_group,
            exhibitions_per_group=exhibitions_per_group,
            size=size,
            offtopic=offtopic,
            test_frac=test_frac,
            seed=seed,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    dataset = build_synthetic_dataset(out_dir, options)
    write_dataset(dataset, out_dir)
    n_images = len({p.id for e in dataset.exhibitions for p in e.products})
    typer.echo(
        f"wrote {out_dir}: SYNTHETIC catalogue, {len(dataset.exhibitions)} exhibitions "
        f"({len(dataset.split('test'))} test), {n_images} drawn product images"
    )


@app.command("events")
def events(
    out_dir: Path = typer.Argument(..., help="Dataset folder to write (dataset.json, exhibitions.jsonl)."),
    store_url: Optional[str] = typer.Option(
        None,
        "--store",
        help="The store the events were logged on (default "
        "CLIK_STORE_URL, else the embedded one): topics and images come from it.",
    ),
    days: Optional[Path] = typer.Option(
        None,
        "--days",
        help="Day files written by `clik events --days` (default: "
        "the store's own log: counters on Redis, every event on the embedded store).",
    ),
    since: Optional[str] = typer.Option(None, help="First UTC day (YYYY-MM-DD) of the day files to read."),
    until: Optional[str] = typer.Option(None, help="Last UTC day (YYYY-MM-DD) of the day files to read."),
    min_impressions: int = typer.Option(100, min=1, help="Impressions a product needs to get a CTR label."),
    smoothing: float = typer.Option(20.0, min=0.0, help="Pseudo-impressions at the catalogue's CTR added to each."),
    test_frac: float = typer.Option(0.2, min=0.0, max=1.0, help="Share of exhibitions in the test split."),
    seed: int = typer.Option(0, help="Seed of the split."),
    name: str = typer.Option("events", help="Dataset name (shows up in reports)."),
    with_labels: Optional[Path] = typer.Option(
        None,
        "--with-labels",
        help="The dataset the served model was "
        "trained on: its train exhibitions are added with their own labels "
        "(default criterion `engagement`; the retraining cycle).",
    ),
) -> None:
    """Turn logged shopper events into a clik dataset with a smoothed `ctr` criterion, for `clik train`.

    Example: clik data events /data/ctr-2026-12 --days /var/lib/clik/events --since 2026-11-01
    """
    from clik_cli.settings import open_cli_store
    from indexer.day_files import read_days
    from indexer.errors import NotFound
    from indexer.events import EmbeddedEventLog, event_log_for
    from training.data.events import CtrOptions, ListedExhibition, count_events, ctr_dataset, with_original_labels
    from training.data.format import load_dataset, write_dataset

    try:
        options = CtrOptions(min_impressions=min_impressions, smoothing=smoothing, test_frac=test_frac, seed=seed)
        original = load_dataset(with_labels) if with_labels is not None else None
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    store = open_cli_store(store_url)
    try:
        if days is not None:
            if not days.is_dir():
                typer.echo(f"error: no day files folder {days}", err=True)
                raise typer.Exit(2)
            counts = count_events(read_days(days, since, until))
            source = f"clik data events: day files {days} [{since or '...'}, {until or '...'}]"
        else:
            log = event_log_for(store)
            if isinstance(log, EmbeddedEventLog):
                counts = count_events(log.iter_events())
            else:
                counts = {}
                for ex in log.exhibitions():
                    for (_v, _arm, product, kind), n in log.counters(ex).items():
                        row = counts.setdefault((ex, product), [0, 0])
                        if kind in ("impression", "click"):
                            row[0 if kind == "impression" else 1] += n
            source = "clik data events: the store's event log"
        listed = []
        for exhibition_id in sorted({ex for ex, _ in counts}):
            try:
                exhibition = store.get_exhibition(exhibition_id)
            except NotFound:
                continue  # deleted since: its events cannot be labelled
            images = []
            for pid in exhibition.product_ids:
                if (exhibition_id, pid) in counts:
                    try:
                        images.append((pid, store.get_product(pid).image_source))
                    except NotFound:
                        pass
            listed.append(ListedExhibition(exhibition_id, exhibition.topic, images))
    finally:
        store.close()
    dataset = ctr_dataset(counts, listed, options, name, source)
    if not dataset.exhibitions:
        typer.echo(f"error: no exhibition has two products with {min_impressions} impressions", err=True)
        raise typer.Exit(1)
    if original is not None:
        dataset = with_original_labels(dataset, original)
    write_dataset(dataset, out_dir)
    meta = dataset.meta
    added = f" ({meta['original_exhibitions']} with the labels of {meta['original']})" if original is not None else ""
    typer.echo(
        f"wrote {out_dir}: {len(dataset.exhibitions)} exhibitions{added} ({len(dataset.split('test'))} test), "
        f"{sum(len(e.products) for e in dataset.exhibitions)} labelled products; "
        f"{meta['impressions']} impressions, {meta['clicks']} clicks, catalogue CTR {meta['global_ctr']:.4f}"
    )
