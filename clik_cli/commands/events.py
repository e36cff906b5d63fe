"""`clik events`: count the shopper events of the stream (Redis store), exactly once each."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Optional

import typer


def events(
    store_url: Optional[str] = typer.Option(None, "--store", help="The Redis store (default CLIK_STORE_URL)."),
    consumer: Optional[str] = typer.Option(None, help="Consumer name in the group (default host-pid)."),
    batch: int = typer.Option(500, min=1, help="Events per read and per counting script."),
    idle_exit: Optional[float] = typer.Option(
        None, min=0, help="Exit after this many seconds without events (default: run until Ctrl-C)."
    ),
    days: Optional[Path] = typer.Option(
        None,
        "--days",
        envvar="CLIK_EVENTS_DAYS_DIR",
        help="Also append every event to day files here (events-YYYY-MM-DD.jsonl, UTC) for `clik data events`.",
    ),
) -> None:
    """Count events from POST /events per (exhibition, product, model version, arm, type).

    Any number of these may run (a Redis consumer group shares the stream between them); one
    killed mid-batch loses nothing and counts nothing twice (its entries are claimed by another
    after CLIK_EVENTS_CLAIM_IDLE_MS).

    With --days, each batch is also appended to day files before it is counted (a kill may
    repeat a line there, never lose one; `clik data events` reads each event_id once).

    Example: CLIK_STORE_URL=redis://127.0.0.1:6379/0 clik events --days /var/lib/clik/events
    """
    from clik_cli.settings import CliSettings
    from indexer.contracts import is_redis_url
    from indexer.day_files import DayFiles
    from indexer.events import EventLogConfig, RedisEventLog, consume

    cli = CliSettings()
    url = store_url or cli.store_url
    if not is_redis_url(url):
        typer.echo("error: events need the Redis store (--store redis://... or CLIK_STORE_URL)", err=True)
        raise typer.Exit(2)
    config = EventLogConfig(claim_idle_ms=cli.events_claim_idle_ms)
    log = RedisEventLog.from_url(url, cli.store_prefix, config)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    started = time.monotonic()
    try:
        counted = consume(
            log,
            name,
            batch=batch,
            stop_after_idle=idle_exit,
            before_commit=DayFiles(days).append_entries if days is not None else None,
        )
    except KeyboardInterrupt:
        counted = None
    stats = log.stats()
    typer.echo(
        f"consumer {name}: {'' if counted is None else f'{counted} events counted, '}"
        f"{time.monotonic() - started:.1f}s; stream {stats}"
    )
