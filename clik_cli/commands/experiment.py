"""`clik experiment RAW_DIR`: methods and query variants over split seeds, one table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def experiment(
    raw_dir: Path = typer.Argument(..., help="H&M raw layout (articles.csv, sales.csv, images/)."),
    out: Path = typer.Option(Path("runs/experiment"), "--out", help="Where the splits, runs and summary go."),
    seeds: str = typer.Option("1,2,3", help="Split seeds, comma-separated (3 or more for honest intervals)."),
    runs: str = typer.Option(
        "clik-group,clik-virtual,clik-topic,probe,triplet,pairwise,pointwise",
        help="Runs, comma-separated (clik-group, clik-virtual, clik-topic, probe, triplet, pairwise, pointwise).",
    ),
    test_frac: float = typer.Option(0.3, min=0.05, max=0.9, help="Share of topic groups held out per split."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML training config for every run (default: the defaults)."
    ),
    set_: List[str] = typer.Option([], "--set", help="key=value for every run, e.g. --set epochs=10"),
    languages: str = typer.Option(
        "en",
        help="Topic languages, comma-separated (en, ko): every run also on the "
        "same exhibitions with topics in the others, as <run>-ko.",
    ),
    train_seeds: str = typer.Option(
        "",
        "--train-seeds",
        help="Training seeds, comma-separated (e.g. 0,1,2): every run trained with each on every "
        "split, the table pooling them (default: the config's seed, one run per split).",
    ),
) -> None:
    """Train and evaluate every run on every split seed, then write summary.md and summary.json
    (Table 2 and Table 3 shapes, means and 95% intervals). Finished runs are not redone.

    Example: clik experiment ../shared/data/hm --out runs/exp --seeds 1,2,3 --runs clik-group,triplet
    Korean topics: clik experiment ../shared/data/hm --out runs/ko --config configs/hm-e5-locked.yaml \
        --runs clik-group --languages en,ko
    Training seeds too: clik experiment ../shared/data/hm --out runs/exp --runs clik-group,pairwise \
        --train-seeds 0,1,2
    """
    from training.experiment import ExperimentPlan, run_experiment

    try:
        plan = ExperimentPlan(
            raw_dir,
            out,
            tuple(int(s) for s in seeds.split(",") if s.strip()),
            tuple(r.strip() for r in runs.split(",") if r.strip()),
            test_frac,
            config,
            tuple(set_),
            languages=tuple(lang.strip() for lang in languages.split(",") if lang.strip()),
            train_seeds=tuple(int(t) for t in train_seeds.split(",") if t.strip()) or None,
        )
        run_experiment(plan, echo=typer.echo)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo((out / "summary.md").read_text())
