from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `clik train`."),
    data: Path = typer.Argument(..., help="Dataset directory."),
    split: str = typer.Option("test", help="Split to evaluate."),
    k: int = typer.Option(50, help="Images per group (larger groups are sampled with --seed)."),
    seed: int = typer.Option(0),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% intervals (0: none)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result as JSON here."),
    device: Optional[str] = typer.Option(None),
    cache_dir: Optional[str] = typer.Option(
        None, help="Backbone feature cache (default: the one the run trained with)."
    ),
) -> None:
    """Evaluate a trained run with the paper's protocol, scored as the service scores (topic fit
    included): MRR, Top1/3/5-Top1, off-topic@1/@10, and the off-topic flag's AUC, precision and
    recall; beside them a random ranking and CLIK's appeal alone; and the diversity of the top 5
    (distinct families, mean pairwise cosine) with and without the diverse selection.

    Example: clik evaluate runs/hm-clik data/hm --split test --json runs/hm-clik/eval.json
    """
    from training.evaluate import evaluate as run_eval
    from training.evaluate import write_json

    result = run_eval(
        run, data, split=split, k=k, seed=seed, bootstrap_samples=bootstrap, device=device, cache_dir=cache_dir
    )
    m, ci = result["metrics"], result["ci95"]
    typer.echo(
        f"{result['method']}{'/' + result['query'] if result['query'] else ''} on {result['groups']} {split} groups (K={k})"
    )
    for key, value in m.items():
        interval = f"  [{ci[key][0]:.4f}, {ci[key][1]:.4f}]" if key in ci else ""
        base = f"   random {result['random'][key]:.4f}" if key in result["random"] else ""
        alone = f"   appeal alone {result['appeal_only'][key]:.4f}" if key in result.get("appeal_only", {}) else ""
        typer.echo(f"  {key:<15} {value:.4f}{interval}{base}{alone}")
    d = result["diversity"]
    typer.echo(
        f"  top 5: distinct families {d['plain']['families@5']:.2f} plain, "
        f"{d['diverse']['families@5']:.2f} diverse; mean pairwise cosine "
        f"{d['plain']['similarity@5']:.3f} plain, {d['diverse']['similarity@5']:.3f} diverse; "
        f"diverse first pick = plain one in {d['first_pick_same']:.1%} of groups"
    )
    if json_out:
        write_json(result, json_out)
        typer.echo(f"wrote {json_out}")
