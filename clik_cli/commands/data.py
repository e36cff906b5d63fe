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
) -> None:
    """Turn the H&M raw layout into a clik dataset (images are referenced, not copied).

    Example: clik data hm ../shared/data/hm /tmp/hm-data --seed 0
    """
    from training.data.format import write_dataset
    from training.data.hm import HMOptions, build_hm_dataset

    try:
        options = HMOptions(min_group=min_group, size=size, offtopic=offtopic, test_frac=test_frac,
                            seed=seed, include_unsold=unsold)
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
