from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def expand_images(items: List[str]) -> List[str]:
    """Folders become their image files (sorted); files and URLs stay as given."""
    out: List[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def rank(
    images: List[str] = typer.Argument(..., help="Image files, folders of images, or http(s) URLs."),
    bundle: Path = typer.Option(..., "--bundle", "-b", help="A bundle written by `clik export`."),
    topic: Optional[str] = typer.Option(None, help='Topic as JSON: {"name": ..., "cat1": ..., "kwds": "a,b"}'),
    name: Optional[str] = typer.Option(None, help="Topic title (shortcut for a topic with only a name)."),
    topk: int = typer.Option(5, min=1, help="How many images to print."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Rank images for a topic with a model bundle.

    Example: clik rank --bundle bundles/hm-clik --name "Men trousers" ./photos/
    """
    import clik

    if (topic is None) == (name is None):
        raise typer.BadParameter("give exactly one of --topic JSON or --name TEXT")
    try:
        attrs = json.loads(topic) if topic is not None else {"name": name}
        clik.normalize_topic(attrs)
    except (json.JSONDecodeError, ValueError) as exc:
        raise typer.BadParameter(f"bad topic: {exc}") from None
    paths = expand_images(images)
    if not paths:
        typer.echo("error: no images found", err=True)
        raise typer.Exit(2)
    predictor = clik.Predictor.load(bundle)
    result = predictor(attrs, paths, topk=topk)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model_version": result.model_version,
                    "items": [
                        {
                            "rank": r + 1,
                            "image": paths[i],
                            "score": s,
                            "appeal": result.appeal[r],
                            "topic_fit": result.topic_fit[r],
                            "off_topic": result.off_topic[r],
                        }
                        for r, (i, s) in enumerate(result)
                    ],
                    "errors": {paths[i]: e for i, e in result.errors.items()},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        typer.echo("  #   score  appeal  topic fit")
        for r, (i, s) in enumerate(result):
            flag = "  off-topic?" if result.off_topic[r] else ""
            typer.echo(f"{r + 1:>3}  {s:+.3f}  {result.appeal[r]:+.3f}  {result.topic_fit[r]:>9.2f}  {paths[i]}{flag}")
        for err in result.errors.values():
            typer.echo(f"failed  {err}", err=True)
    if not result.indices:
        raise typer.Exit(1)
