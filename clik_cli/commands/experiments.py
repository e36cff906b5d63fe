"""`clik experiments report ID` and `clik experiments replay ID`: an online experiment's results,
and an off-policy estimate of a candidate model version from its logged exploration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Online experiments (docs/experiments.md): results and off-policy replay.", no_args_is_help=True)


def _experiment(store, experiment_id: str):
    from indexer.experiments import ExperimentRecords

    found = ExperimentRecords(store).get(experiment_id)
    if found is None:
        typer.echo(f"error: no experiment {experiment_id!r} in this store", err=True)
        raise typer.Exit(2)
    return found


@app.command("report")
def report(
    experiment_id: str = typer.Argument(..., help="The experiment's id (PUT /experiments/{id})."),
    store_url: Optional[str] = typer.Option(None, "--store", help="The store (default CLIK_STORE_URL, else embedded)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Impressions, clicks, CTR with 95% intervals, P(beats control) and lift per arm.

    Example: clik experiments report summer-ab --store redis://127.0.0.1:6379/0
    """
    from api.experiment_stats import table
    from api.routes.experiments import experiment_report
    from clik_cli.settings import open_cli_store
    from indexer.events import event_log_for

    store = open_cli_store(store_url)
    try:
        doc = experiment_report(_experiment(store, experiment_id), event_log_for(store))
    finally:
        store.close()
    typer.echo(table(doc))
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=2))


class _NoQueue:
    """Replay ranks and never encodes."""

    def submit(self, product_ids: list[str]) -> None:
        raise RuntimeError("replay does not encode")


@app.command("replay")
def replay(
    experiment_id: str = typer.Argument(..., help="The experiment whose randomised arms were logged."),
    candidate: str = typer.Option("active", help="Model version to estimate (registered, with vectors), or 'active'."),
    days: Optional[Path] = typer.Option(
        None,
        "--days",
        help="Day files of `clik events --days` (needed on Redis; default on the embedded store: its own log).",
    ),
    arm: Optional[List[str]] = typer.Option(
        None, "--arm", help="Arms whose answers to use (default: every explore and control=random arm)."
    ),
    store_url: Optional[str] = typer.Option(None, "--store", help="The store (default CLIK_STORE_URL, else embedded)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the estimate as JSON here."),
) -> None:
    """Inverse-propensity (IPS) and self-normalised (SNIPS) CTR of showing the candidate's top
    product, from the logged answers of randomising arms.

    Example: clik experiments replay summer-ab --candidate 3f2a9c... --days /var/lib/clik/events
    """
    from api.experiment_replay import estimate, logged_answers
    from api.metrics import ApiMetrics
    from api.service import ClikService
    from api.settings import ApiSettings
    from clik_cli.settings import open_cli_store
    from indexer.day_files import read_days
    from indexer.errors import NotFound, StoreError
    from indexer.events import EmbeddedEventLog, event_log_for

    store = open_cli_store(store_url)
    experiment = _experiment(store, experiment_id)
    names = arm or [
        a.name for a in experiment.arms if a.policy == "explore" or (a.policy == "control" and a.control == "random")
    ]
    unknown = [n for n in names if n not in {a.name for a in experiment.arms}]
    if unknown or not names:
        typer.echo(f"error: no randomising arm to replay ({', '.join(unknown) or 'none found'})", err=True)
        raise typer.Exit(2)
    if days is not None:
        events = read_days(days)
    else:
        log = event_log_for(store)
        if not isinstance(log, EmbeddedEventLog):
            typer.echo("error: on Redis the answers are in the day files: pass --days", err=True)
            raise typer.Exit(2)
        events = log.iter_events()
    rows = logged_answers(events, {experiment.arm(n).label(experiment_id) for n in names})
    svc = ClikService(ApiSettings(), store, _NoQueue(), ApiMetrics())
    try:
        version = svc.versions.resolve().name if candidate == "active" else store.get_version(candidate).name

        def choose(exhibition_id: str) -> str | None:
            try:
                items = svc.rankings.page_of(exhibition_id, 0, 1, version).items
            except (NotFound, StoreError):
                return None
            return items[0].product_id if items else None

        result = {"experiment_id": experiment_id, "candidate": version, "arms": names, **estimate(rows, choose)}
    finally:
        svc.close()
        store.close()
    if result["ips"] is None:
        typer.echo("no logged impressions with a propensity for these arms")
    else:
        lo, hi = result["ips_ci95"]
        typer.echo(
            f"candidate {version}: IPS CTR {result['ips']:.4f} [{lo:.4f}, {hi:.4f}], SNIPS "
            f"{result['snips'] if result['snips'] is not None else float('nan'):.4f}; "
            f"{result['matched']} of {result['impressions']} logged impressions match, effective sample "
            f"size {result['effective_sample_size']:.0f}; logged CTR {result['logged_ctr']:.4f}"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))
