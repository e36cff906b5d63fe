"""`clik worker`: a Celery worker for encoding and re-indexing (settings: CLIK_* variables)."""

from __future__ import annotations

import os
from typing import Optional

import typer


def worker(
    queue: Optional[str] = typer.Option(None, "--queue", "-Q", help="Queue to consume (default CLIK_QUEUE, 'clik')."),
    pool: str = typer.Option(
        "solo",
        help="solo: one task at a time in this process (one per device); prefork: --concurrency processes (CPU only).",
    ),
    concurrency: int = typer.Option(1, min=1, help="Processes with --pool prefork."),
    device: Optional[str] = typer.Option(None, help="cuda, cuda:1, cpu (default: cuda when available)."),
    threads: Optional[int] = typer.Option(
        None, min=1, help="torch CPU threads per process (default: cores - 1; with prefork, cores / concurrency)."
    ),
    loglevel: str = typer.Option("info", "--loglevel", "-l"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Worker node name (default clik@HOST)."),
) -> None:
    """Run a Celery worker that encodes product images and runs re-index jobs.

    One process per GPU (--device cuda:N) or per CPU machine (the default solo pool).
    Example: CLIK_BROKER_URL=redis://127.0.0.1:6379/1 CLIK_STORE_URL=redis://127.0.0.1:6379/0 clik worker
    """
    if pool not in ("solo", "prefork", "threads"):
        raise typer.BadParameter("pool must be solo, prefork or threads")
    if pool == "solo" and concurrency != 1:
        raise typer.BadParameter("--concurrency needs --pool prefork (solo runs one task at a time)")
    if threads is None and pool == "prefork" and concurrency > 1:
        threads = max(1, (os.cpu_count() or 1) // concurrency)  # processes must not oversubscribe cores
    # worker.app reads its settings when imported: set the overrides first.
    for key, value in (("DEVICE", device), ("TORCH_THREADS", threads), ("QUEUE", queue)):
        if value is not None:
            os.environ[f"CLIK_{key}"] = str(value)
    from worker.app import app as celery_app, settings

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        settings.queue,
        "-n",
        name or f"{settings.queue}@%h",
        "-l",
        loglevel,
    ]
    typer.echo(
        f"clik worker: broker {settings.broker_url}, store {settings.store_url}, queue {settings.queue}, "
        f"pool {pool}x{concurrency}"
    )
    celery_app.worker_main(argv)


app = typer.Typer(add_completion=False)
app.command()(worker)
