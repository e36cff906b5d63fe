"""`clik models`: the model versions in the store (register, re-index and switch, drop, watch)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Model versions: list, register, activate (re-index + switch), drop, watch.",
                  no_args_is_help=True)

STORE_HELP = "Store URL (redis://...) or folder; default CLIK_STORE_URL, else the embedded ./.clik/store."


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _store(url: Optional[str]):
    from clik_cli.settings import open_cli_store
    from indexer.errors import StoreError

    try:
        return open_cli_store(url)
    except StoreError as exc:
        _fail(f"store unavailable: {exc}", 3)


def _resolve(store, ref: str):
    """A version name (or a unique prefix of one), or a bundle folder (registered if new)."""
    from clik.checkpoint import read_bundle_info
    from indexer.errors import VersionNotFound

    path = Path(ref)
    if path.is_dir():
        try:
            info = read_bundle_info(path)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            _fail(f"{path}: {exc}")
        return store.register_version(info.version, info.embed_dim, bundle_uri=str(path.resolve()))
    try:
        return store.get_version(ref)
    except VersionNotFound:
        matches = [v for v in store.list_versions() if v.name.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        _fail(f"no model version {ref!r}" if not matches else f"{ref!r} matches {len(matches)} versions; give more of it")


@app.command("list")
def list_versions(
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List model versions: name, state, active, re-index progress, bundle.

    Example: clik models list --store redis://127.0.0.1:6379/0
    """
    from worker.reindex import ReindexProgress

    store = _store(store_url)
    rows = []
    for v in sorted(store.list_versions(), key=lambda v: v.created_at):
        job = ReindexProgress.load(store, v.name)
        rows.append({
            "version": v.name, "active": v.active, "state": v.state.value, "dim": v.dim,
            "bundle": v.bundle_uri,
            "created": datetime.fromtimestamp(v.created_at, timezone.utc).isoformat(timespec="seconds"),
            "reindex": None if job is None else {"state": job.state, "done": job.done, "total": job.total,
                                                 "skipped": len(job.skipped), "in_flight": job.in_flight,
                                                 "workers": job.workers},
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no model versions; register one with `clik models activate BUNDLE_DIR`")
        return
    for r in rows:
        job = r["reindex"]
        progress = f"re-index {job['state']} {job['done']}/{job['total']}" if job else "no re-index job"
        typer.echo(f"{'*' if r['active'] else ' '} {r['version'][:16]}  {r['state']:<8} {progress:<28} {r['bundle']}")


@app.command("register")
def register(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `clik export`."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Register a bundle as a model version (state filling; not active until `activate`).

    Example: clik models register bundles/hm-clik
    """
    store = _store(store_url)
    if not bundle.is_dir():
        _fail(f"{bundle}: not a folder")
    version = _resolve(store, str(bundle))
    typer.echo(f"registered {version.name} ({version.state.value}, dim {version.dim})")


@app.command("activate")
def activate(
    ref: str = typer.Argument(..., help="A version name (or unique prefix), or a bundle folder to register."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    celery: bool = typer.Option(False, "--celery", help="Let the Celery workers re-index (task clik.reindex) "
                                "and follow the progress, instead of encoding in this process."),
    keep_previous: bool = typer.Option(False, help="Keep the previously active version's vectors."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass (in-process)."),
    timeout: float = typer.Option(0, min=0, help="--celery: give up waiting after this many seconds (0: never)."),
) -> None:
    """Encode every image with a version, then make it the active one (atomic) and drop the old.

    Resumable: run it again after a crash and only the rest is encoded.

    Example: clik models activate bundles/hm-clik-v2
    """
    store = _store(store_url)
    version = _resolve(store, ref)
    if celery:
        _activate_with_workers(store, version, keep_previous, timeout)
    else:
        _activate_here(store, version, keep_previous, batch_size)


def _activate_here(store, version, keep_previous: bool, batch_size: int) -> None:
    from tqdm import tqdm

    from worker.encode import EncoderCache
    from worker.inprocess import run_reindex
    from worker.settings import WorkerSettings

    settings = WorkerSettings()
    encoders = EncoderCache(settings.device, batch_size, max_versions=1)
    bar = tqdm(desc=f"re-index {version.name[:12]}", unit="img")

    def show(progress) -> None:
        bar.total = progress.total
        bar.n = progress.done + len(progress.skipped)
        bar.refresh()

    if keep_previous:
        _keep_previous(store, version)
    progress = run_reindex(store, version.name, encoders, settings.fetch_limits(), on_progress=show,
                           chunk_size=max(batch_size, 64), decode_threads=settings.decode_threads)
    bar.close()
    _summary(progress)


def _activate_with_workers(store, version, keep_previous: bool, timeout: float) -> None:
    from celery import Celery
    from tqdm import tqdm

    from worker.reindex import DONE, SWITCHED, ReindexProgress  # noqa: F401 (states named in the loop)
    from worker.settings import WorkerSettings

    settings = WorkerSettings()
    sender = Celery(broker=settings.broker_url)
    if keep_previous:
        _keep_previous(store, version)
    sender.send_task("clik.reindex", args=[version.name], queue=settings.queue)
    typer.echo(f"sent clik.reindex for {version.name} to queue {settings.queue!r}; following its progress")
    bar = tqdm(desc=f"re-index {version.name[:12]}", unit="img")
    start = time.monotonic()
    while True:
        progress = ReindexProgress.load(store, version.name)
        if progress is not None:
            bar.total, bar.n = progress.total, progress.done + len(progress.skipped)
            bar.refresh()
            if progress.state in (SWITCHED, DONE):
                break
        if timeout and time.monotonic() - start > timeout:
            bar.close()
            _fail(f"re-index not finished after {timeout:.0f}s; it goes on in the workers "
                  f"(see `clik models list`)", 4)
        time.sleep(1.0)
    bar.close()
    _summary(progress)


def _keep_previous(store, version) -> None:
    """Start the job record with no previous version: the end of the job then drops nothing."""
    from worker import reindex

    progress = reindex.start(store, version.name)
    progress.previous = None
    progress.save(store)


def _summary(progress) -> None:
    typer.echo(f"active: {progress.version} ({progress.done} images encoded, {len(progress.skipped)} skipped)")
    for digest, reason in list(progress.skipped.items())[:20]:
        typer.echo(f"  skipped {digest[:12]}: {reason}", err=True)
    if progress.previous:
        fate = "dropped" if progress.state == "done" else "dropped by the workers after a grace period"
        typer.echo(f"previous version {progress.previous[:16]}: {fate}")


@app.command("drop")
def drop(
    ref: str = typer.Argument(..., help="A version name or unique prefix."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Delete a version and all its vectors (the active version is refused).

    Example: clik models drop 3f2a9c
    """
    from indexer.errors import VersionInUse

    store = _store(store_url)
    version = _resolve(store, ref)
    try:
        store.drop_version(version.name)
    except VersionInUse:
        _fail(f"{version.name} is the active version; activate another one first", 1)
    typer.echo(f"dropped {version.name}")


@app.command("watch")
def watch(
    models_dir: Optional[Path] = typer.Argument(None, help="Folder of bundles (default CLIK_MODELS_DIR)."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    interval: float = typer.Option(60.0, min=0.1, help="Seconds between looks."),
    once: bool = typer.Option(False, help="Look once, roll out what is new, and exit."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
) -> None:
    """Roll out new bundles as they appear: register, re-index, switch, drop the old one.

    A bundle is new when its version is not registered yet or not filled; the newest such
    bundle wins when several appear at once. Bundles are written atomically by `clik export`.

    Example: clik models watch /models --interval 60
    """
    from clik.checkpoint import read_bundle_info
    from clik_cli.settings import CliSettings
    from indexer.errors import VersionNotFound
    from indexer.records import VersionState

    folder = models_dir or CliSettings().models_dir
    if not folder.is_dir():
        _fail(f"{folder}: not a folder")
    store = _store(store_url)
    while True:
        candidates = []
        for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                info = read_bundle_info(path)
            except (FileNotFoundError, KeyError, ValueError):
                continue  # not a bundle (or one still being written)
            try:
                known = store.get_version(info.version)
                if known.active or known.state == VersionState.READY:
                    continue
            except VersionNotFound:
                pass
            candidates.append((path.stat().st_mtime, path))
        if candidates:
            path = max(candidates)[1]
            typer.echo(f"new bundle {path}")
            _activate_here(store, _resolve(store, str(path)), keep_previous=False, batch_size=batch_size)
        if once:
            return
        time.sleep(interval)
