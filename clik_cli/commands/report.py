from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    results: List[Path] = typer.Argument(..., help="JSON files written by `clik evaluate --json`."),
    out: Path = typer.Option(..., "--out", help="Directory for report.md, metrics.png and contact sheets."),
    exhibition: Optional[str] = typer.Option(None, help="Exhibition for the contact sheets (default: the first)."),
) -> None:
    """Markdown report (paper Table 2 / Table 3 shapes), a plot and contact sheets from evaluations.

    Example: clik report runs/*/eval.json --out reports/hm
    """
    from training.report import load_results, write_report

    path = write_report(load_results(results), out, exhibition)
    typer.echo(f"wrote {path}")
