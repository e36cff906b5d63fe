from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(
    source: Optional[Path] = typer.Argument(
        None, help="A training checkpoint directory (or a run directory holding checkpoint/)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    pretrained: Optional[str] = typer.Option(
        None,
        help="Instead of a checkpoint, export a fresh model of this config (e.g. clik-minilm-lite0): "
        "pretrained towers, untrained projections and heads.",
    ),
    register: bool = typer.Option(
        True,
        "--register/--no-register",
        help="Register the bundle as a model version in the store (activate it with `clik models activate`).",
    ),
    store_url: Optional[str] = typer.Option(
        None, "--store", help="Store URL or folder; default CLIK_STORE_URL, else the embedded ./.clik/store."
    ),
) -> None:
    """Export a model as a split bundle (text side for the API, image side for workers).

    Example: clik export runs/hm-clik --out bundles/hm-clik   (then: clik models activate bundles/hm-clik)
    """
    import clik
    from clik.checkpoint import checkpoint_dir

    if (source is None) == (pretrained is None):
        raise typer.BadParameter("give either a checkpoint directory or --pretrained CONFIG")
    if pretrained is not None:
        model = clik.create_model(pretrained)
        tokenizer = clik.create_tokenizer(model)
    else:
        ckpt = checkpoint_dir(source)
        if not (ckpt / "config.json").exists():
            typer.echo(f"error: no checkpoint in {source}", err=True)
            raise typer.Exit(2)
        model, tokenizer, _ = clik.load_checkpoint(ckpt)
    topic_fit = _calibration(source) if source is not None else None
    info = clik.export_bundle(model.eval(), tokenizer, out, topic_fit=topic_fit)
    typer.echo(
        f"topic fit: {'calibrated on ' + str(topic_fit.get('fitted_on')) if topic_fit else 'the prior (no calibration in the run)'}"
    )
    typer.echo(f"bundle {info.path} version {info.version} ({info.method}, query={info.query}, dim={info.embed_dim})")
    if register:
        from clik_cli.settings import open_cli_store
        from indexer.errors import StoreError

        try:
            with open_cli_store(store_url) as store:
                version = store.register_version(info.version, info.embed_dim, bundle_uri=str(info.path.resolve()))
        except StoreError as exc:
            typer.echo(f"error: bundle written but not registered, store unavailable: {exc}", err=True)
            raise typer.Exit(3)
        state = "active" if version.active else version.state.value
        typer.echo(
            f"registered version {info.version[:16]} ({state}); switch to it with "
            f"`clik models activate {info.version[:12]}`"
        )


def _calibration(source: Path) -> dict | None:
    """The run's topic-fit calibration (training/calibrate.py), if training wrote one."""
    from training.calibrate import read_calibration

    found = read_calibration(source)
    return found.to_dict() if found is not None else None
