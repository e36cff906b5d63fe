"""Entry point of the ``clik`` command. Commands import their heavy dependencies lazily, so
``clik --help`` answers in a blink."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .commands import (
    config,
    data,
    demo,
    evaluate,
    events,
    experiment,
    experiments,
    export,
    index,
    models,
    rank,
    report,
    serve,
    train,
    worker,
)
from .config_file import ConfigFileError, apply_config_file

# The default towers load from wheels; a stray hub lookup would only hang on an offline box.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(
    help="CLIK: pick the representative image of an exhibition.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(
    config_file: Optional[Path] = typer.Option(
        None,
        "--config",
        envvar="CLIK_CONFIG",
        help="TOML file of settings (keys are CLIK_ names without the prefix); default ./clik.toml if present.",
    ),
) -> None:
    """CLIK: pick the representative image of an exhibition.

    Settings: flags > CLIK_* environment > the config file > defaults; `clik config` prints them.
    Exit codes: 0 ok, 1 nothing done (e.g. no image could be read), 2 bad input, 3 store or
    broker unavailable, 4 timed out.
    """
    try:
        apply_config_file(config_file)
    except ConfigFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


app.command("demo")(demo.demo)
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("report")(report.report)
app.command("export")(export.export)
app.command("rank")(rank.rank)
app.add_typer(models.app, name="models")
app.command("index")(index.index)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("config")(config.config)
app.command("events")(events.events)
app.command("experiment")(experiment.experiment)
app.add_typer(experiments.app, name="experiments")

if __name__ == "__main__":
    app()
