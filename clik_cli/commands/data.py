from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Build datasets in the project's format (clik-dataset/1, see docs/dataset.md).",
    no_args_is_help=True,
)


@app.command("hm")
def hm(
    raw_dir: Path = typer.Argument(..., help="H&M raw layout: articles.csv, sales.csv, images/<article_id>.jpg."),
    out_dir: Path = typer.Argument(..., help="Dataset folder to write (dataset.json, exhibitions.jsonl)."),
    min_group: int = typer.Option(20, min=1, help="Sold articles a (section, product type) group needs to become a topic."),
    size: int = typer.Option(50, min=2, help="Products per exhibition, off-topic ones included."),
    offtopic: float = typer.Option(0.2, min=0.0, max=0.99, help="Share of off-topic products mixed into each exhibition."),
    test_frac: float = typer.Option(0.1, min=0.0, max=1.0, help="Share of topic groups in the test split (1.0: all)."),
    seed: int = typer.Option(0, help="Seed of every random choice; same seed, same dataset."),
    unsold: bool = typer.Option(True, "--unsold/--sold-only", help="Let unsold articles of a group join its exhibitions with sales 0."),
    language: str = typer.Option("en", help="Topic language: en (the article values) or ko (Korean, from "
                                 "training/data/hm_korean.py; same exhibitions, only the topic words differ)."),
) -> None:
    """Turn the H&M raw layout into a clik dataset (images are referenced, not copied).

    Example: clik data hm ../shared/data/hm /tmp/hm-data --seed 0
    """
    from training.data.format import write_dataset
    from training.data.hm import HMOptions, build_hm_dataset

    try:
        options = HMOptions(min_group=min_group, size=size, offtopic=offtopic, test_frac=test_frac,
                            seed=seed, include_unsold=unsold, language=language)
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
        options = SyntheticOptions(products_per_group=products_per_group, exhibitions_per_group=exhibitions_per_group,
                                   size=size, offtopic=offtopic, test_frac=test_frac, seed=seed)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    dataset = build_synthetic_dataset(out_dir, options)
    write_dataset(dataset, out_dir)
    n_images = len({p.id for e in dataset.exhibitions for p in e.products})
    typer.echo(f"wrote {out_dir}: SYNTHETIC catalogue, {len(dataset.exhibitions)} exhibitions "
               f"({len(dataset.split('test'))} test), {n_images} drawn product images")
