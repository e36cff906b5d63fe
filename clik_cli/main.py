"""Entry point of the ``clik`` command. Commands import their heavy dependencies lazily, so
``clik --help`` answers in a blink."""
from __future__ import annotations

import os

import typer

from .commands import data, demo, evaluate, export, rank, report, train

# The default towers load from wheels; a stray hub lookup would only hang on an offline box.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(
    help="CLIK: pick the representative image of an exhibition.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("export")(export.export)
app.command("rank")(rank.rank)
app.command("demo")(demo.demo)
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("report")(report.report)

if __name__ == "__main__":
    app()
