from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train(
    data: Path = typer.Option(..., "--data", help="Dataset directory (dataset.json + exhibitions.jsonl)."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoint, logs, config."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML training config (see configs/)."),
    method: Optional[str] = typer.Option(
        None, help="clik | triplet | pairwise | pointwise | probe (linear probe, closed form)"
    ),
    query: Optional[str] = typer.Option(None, help="For clik: group | virtual | topic"),
    mode: Optional[str] = typer.Option(None, help="locked (cached backbone features) | full"),
    epochs: Optional[float] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if present)"),
    resume: bool = typer.Option(False, help="Continue from OUT's last checkpoint."),
    init_from: Optional[Path] = typer.Option(
        None,
        "--init-from",
        help="Start from this run's or bundle's weights "
        "(the retraining cycle: the served bundle, fine-tuned on CTR labels).",
    ),
    set_: List[str] = typer.Option([], "--set", help="Any option as key=value, e.g. --set w_rank=20"),
) -> None:
    """Train CLIK or a baseline on a dataset's train split.

    Example: clik train --data data/hm --config configs/hm-locked.yaml --out runs/hm-clik --method clik --query group

    Under torchrun each process trains a replica: torchrun --nproc-per-node 2 -m clik_cli.main train ...
    """
    from training.config import load_config
    from training.trainer import train as run_training

    try:
        cfg = load_config(
            config,
            set_,
            method=method,
            query=query,
            mode=mode,
            epochs=epochs,
            device=device,
            init_from=str(init_from) if init_from else None,
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if not (data / "exhibitions.jsonl").exists():
        typer.echo(f"error: no dataset in {data} (expected exhibitions.jsonl)", err=True)
        raise typer.Exit(2)
    if init_from is not None and not init_from.exists():
        typer.echo(f"error: --init-from {init_from} does not exist", err=True)
        raise typer.Exit(2)
    run_training(data, cfg, out, resume=resume)
    typer.echo(f"trained {cfg.method}{'/' + cfg.query if cfg.method == 'clik' else ''}: {out}")
