"""`clik models`: the model versions in the store (register, re-index and switch, drop, watch)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Model versions: list, register, activate (re-index, gate, switch), rollback, confirm, drop, watch.",
    no_args_is_help=True,
)

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
        _fail(
            f"no model version {ref!r}" if not matches else f"{ref!r} matches {len(matches)} versions; give more of it"
        )


def _coverage_line(store, version: str) -> str:
    cov = store.coverage([version])
    return f"{cov.covered[version]}/{cov.products} products ({cov.share(version):.0%})"


@app.command("list")
def list_versions(
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List model versions: name, state, active, coverage, re-index job, bundle.

    Coverage: catalogue products having a vector in that version (what it can rank).

    Example: clik models list --store redis://127.0.0.1:6379/0
    """
    from worker.reindex import ReindexProgress

    store = _store(store_url)
    versions = sorted(store.list_versions(), key=lambda v: v.created_at)
    cov = store.coverage([v.name for v in versions])
    rows = []
    for v in versions:
        job = ReindexProgress.load(store, v.name)
        rows.append(
            {
                "version": v.name,
                "active": v.active,
                "state": v.state.value,
                "dim": v.dim,
                "bundle": v.bundle_uri,
                "created": datetime.fromtimestamp(v.created_at, timezone.utc).isoformat(timespec="seconds"),
                "coverage": {
                    "products": cov.products,
                    "with_vectors": cov.covered[v.name],
                    "share": round(cov.share(v.name), 4),
                },
                "reindex": None
                if job is None
                else {
                    "state": job.state,
                    "done": job.done,
                    "total": job.total,
                    "skipped": len(job.skipped),
                    "in_flight": job.in_flight,
                    "workers": job.workers,
                    "previous": job.previous,
                    "decision": job.decision,
                },
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no model versions; register one with `clik models activate BUNDLE_DIR`")
        return
    for r in rows:
        job = r["reindex"]
        progress = f"job {job['state']} {job['done']}/{job['total']}" if job else "no re-index job"
        c = r["coverage"]
        covered = f"{c['with_vectors']}/{c['products']} ({c['share']:.0%})"
        typer.echo(
            f"{'*' if r['active'] else ' '} {r['version'][:16]}  {r['state']:<8} covers {covered:<18} "
            f"{progress:<36} {r['bundle']}"
        )
    typer.echo("(* active; coverage = products with a vector in that version / products)")


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
    celery: bool = typer.Option(
        False,
        "--celery",
        help="Let the Celery workers re-index (task clik.reindex) "
        "and follow the progress, instead of encoding in this process.",
    ),
    keep_previous: bool = typer.Option(
        True,
        "--keep-previous/--drop-previous",
        help="Keep the previously active version's vectors for an instant "
        "`clik models rollback` (default), or drop them once the switch is done. "
        "--celery: the workers drop them after CLIK_REINDEX_DROP_GRACE_S unless kept.",
    ),
    min_coverage: Optional[float] = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Share of the products the active "
        "version covers that the new one must cover (default "
        "CLIK_ROLLOUT_MIN_COVERAGE, 1.0).",
    ),
    canary: Optional[int] = typer.Option(
        None,
        min=0,
        help="Exhibitions ranked by both versions before the switch "
        "(default CLIK_ROLLOUT_CANARY_EXHIBITIONS; 0: no canary).",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm the switch without asking (CLIK_ROLLOUT_CONFIRM)."),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass (in-process)."),
    timeout: float = typer.Option(0, min=0, help="--celery: give up waiting after this many seconds (0: never)."),
) -> None:
    """Encode every image with a version, check it, then make it the active one (atomic).

    The switch happens only when the new version covers at least as many products as the active
    one (skipped images are listed by reason otherwise; exit 1, nothing changes), after a canary
    of rankings by both versions. The previous version is kept: `clik models rollback` switches
    back at once. Resumable: run it again after a crash or a fix and only the rest is encoded.

    Example: clik models activate bundles/hm-clik-v2
    """
    from worker.settings import WorkerSettings

    store = _store(store_url)
    version = _resolve(store, ref)
    settings = WorkerSettings()
    policy = _policy(settings, min_coverage, canary)
    if celery:
        _activate_with_workers(store, version, settings, keep_previous, yes, timeout)
    else:
        _activate_here(store, version, settings, policy, keep_previous, batch_size, yes)


def _policy(settings, min_coverage: Optional[float], canary: Optional[int]):
    from dataclasses import replace

    policy = settings.rollout_policy()
    if min_coverage is not None:
        policy = replace(policy, min_coverage=min_coverage)
    if canary is not None:
        policy = replace(policy, canary_exhibitions=canary)
    return policy


def _activate_here(
    store, version, settings, policy, keep_previous: bool, batch_size: int, yes: bool, interactive: bool = True
):
    """Returns the job; exits 1 when the gate refused (or the switch was not confirmed)."""
    from tqdm import tqdm

    from indexer.store_settings import stored_file_roots
    from worker.canary import bundle_topic_sides
    from worker.encode import EncoderCache
    from worker.reindex import run_reindex
    from worker.reindex import AWAITING, REFUSED

    encoders = EncoderCache(settings.device, batch_size, max_versions=1)
    bar = tqdm(desc=f"re-index {version.name[:12]}", unit="img")

    def show(progress) -> None:
        bar.total = progress.total
        bar.n = progress.done + len(progress.skipped)
        bar.refresh()

    def confirm(decision) -> bool:
        if yes:
            return True
        if not interactive:
            return False
        bar.close()
        typer.echo(decision.message)
        return typer.confirm(f"switch the active version to {version.name[:16]}?", default=False)

    progress = run_reindex(
        store,
        version.name,
        encoders,
        settings.fetch_limits(stored_file_roots(store)),
        on_progress=show,
        chunk_size=max(batch_size, 64),
        decode_threads=settings.decode_threads,
        policy=policy,
        drop_previous=not keep_previous,
        topic_sides=bundle_topic_sides(store),
        confirm=confirm,
    )
    bar.close()
    if progress.state in (REFUSED, AWAITING):
        typer.echo(progress.decision, err=True)
        if progress.state == AWAITING:
            typer.echo(f"not switched: confirm with `clik models activate {version.name[:12]} --yes`", err=True)
        if interactive:
            raise typer.Exit(1)
        return progress
    _summary(store, progress)
    return progress


def _activate_with_workers(store, version, settings, keep_previous: bool, yes: bool, timeout: float) -> None:
    from celery import Celery
    from tqdm import tqdm

    from worker import reindex
    from indexer.contracts import REINDEX
    from worker.reindex import AWAITING, DONE, REFUSED, SWITCHED, ReindexProgress

    sender = Celery(broker=settings.broker_url)
    progress = reindex.start(store, version.name)
    progress.keep_previous = keep_previous
    progress.confirmed = progress.confirmed or yes
    progress.save(store)
    sender.send_task(REINDEX, args=[version.name], queue=settings.queue)
    typer.echo(f"sent clik.reindex for {version.name} to queue {settings.queue!r}; following its progress")
    bar = tqdm(desc=f"re-index {version.name[:12]}", unit="img")
    start = time.monotonic()
    while True:
        progress = ReindexProgress.load(store, version.name)
        if progress is not None:
            bar.total, bar.n = progress.total, progress.done + len(progress.skipped)
            bar.refresh()
            if progress.state in (SWITCHED, DONE, REFUSED, AWAITING):
                break
        if timeout and time.monotonic() - start > timeout:
            bar.close()
            _fail(f"re-index not finished after {timeout:.0f}s; it goes on in the workers (see `clik models list`)", 4)
        time.sleep(1.0)
    bar.close()
    if progress.state in (REFUSED, AWAITING):
        typer.echo(progress.decision, err=True)
        if progress.state == AWAITING:
            typer.echo(f"waiting for a confirmation: `clik models confirm {version.name[:12]}`", err=True)
        raise typer.Exit(1)
    _summary(store, progress)


def _summary(store, progress) -> None:
    typer.echo(
        f"active: {progress.version} ({progress.done} images encoded, {len(progress.skipped)} skipped); "
        f"covers {_coverage_line(store, progress.version)}"
    )
    if progress.decision:
        typer.echo(progress.decision)
    for digest, reason in list(progress.skipped.items())[:20]:
        typer.echo(f"  skipped {digest[:12]}: {reason}", err=True)
    if progress.previous:
        if progress.state == "done":
            typer.echo(f"previous version {progress.previous[:16]}: dropped")
        elif progress.keep_previous:
            typer.echo(f"previous version {progress.previous[:16]}: kept (`clik models rollback` switches back)")
        else:
            typer.echo(
                f"previous version {progress.previous[:16]}: kept for the grace period, then dropped by "
                f"the workers if this one stays healthy (`clik models rollback` meanwhile)"
            )


@app.command("rollback")
def rollback(
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
    to: Optional[str] = typer.Option(
        None, "--to", help="The version to go back to (default: the one active before the current one)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Images per forward pass (products added since the switch)."),
) -> None:
    """Switch back to the previous model version at once (its vectors are still in the store).

    Products added since the switch are encoded with it first; no canary is run (it served
    before). The version rolled back from is kept.

    Example: clik models rollback
    """
    from dataclasses import replace

    from worker.reindex import load_record
    from worker.settings import WorkerSettings

    store = _store(store_url)
    active = store.active_version()
    if active is None:
        _fail("the store has no active version", 1)
    if to is None:
        job = load_record(store, active.name)
        if job is None or not job.previous:
            _fail(f"no previous version recorded for {active.name[:16]}; name one with --to", 1)
        to = job.previous
    target = _resolve(store, to)
    if target.active:
        _fail(f"{target.name[:16]} is already the active version", 1)
    settings = WorkerSettings()
    policy = replace(settings.rollout_policy(), canary_exhibitions=0, require_confirmation=False)
    started = time.perf_counter()
    _activate_here(store, target, settings, policy, keep_previous=True, batch_size=batch_size, yes=True)
    typer.echo(f"rolled back from {active.name[:16]} to {target.name[:16]} in {time.perf_counter() - started:.2f}s")


@app.command("confirm")
def confirm(
    ref: str = typer.Argument(..., help="The version whose Celery re-index waits for a confirmation."),
    store_url: Optional[str] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Confirm the switch of a re-index waiting in `awaiting_confirmation` (CLIK_ROLLOUT_CONFIRM):
    the workers check the gate again and switch.

    Example: clik models confirm 3f2a9c
    """
    from celery import Celery

    from indexer.contracts import REINDEX
    from worker.reindex import AWAITING, load_record
    from worker.settings import WorkerSettings

    store = _store(store_url)
    version = _resolve(store, ref)
    job = load_record(store, version.name)
    if job is None or job.state != AWAITING:
        _fail(f"{version.name[:16]} has no re-index waiting for a confirmation", 1)
    typer.echo(job.decision)
    job.confirmed = True
    job.save(store)
    settings = WorkerSettings()
    Celery(broker=settings.broker_url).send_task(REINDEX, args=[version.name], queue=settings.queue)
    typer.echo(f"confirmed; sent clik.reindex for {version.name} (follow it with `clik models list`)")


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
    """Roll out new bundles as they appear: register, re-index, gate, switch (previous kept).

    A bundle is new when its version is not registered yet or not filled; the newest such
    bundle wins when several appear at once. Bundles are written atomically by `clik export`.
    A bundle the gate refused is not tried again until someone runs `clik models activate` on it.
    With CLIK_ROLLOUT_CONFIRM the watcher never switches by itself (it cannot ask).

    Example: clik models watch /models --interval 60
    """
    from clik.checkpoint import read_bundle_info
    from clik_cli.settings import CliSettings
    from indexer.errors import VersionNotFound
    from indexer.records import VersionState
    from worker.reindex import AWAITING, REFUSED, load_record
    from worker.settings import WorkerSettings

    settings = WorkerSettings()
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
            job = load_record(store, info.version)
            if job is not None and job.state in (REFUSED, AWAITING):
                continue  # refused once: retried by a person (`clik models activate`), not every minute
            candidates.append((path.stat().st_mtime, path))
        if candidates:
            path = max(candidates)[1]
            typer.echo(f"new bundle {path}")
            job = _activate_here(
                store,
                _resolve(store, str(path)),
                settings,
                settings.rollout_policy(),
                keep_previous=True,
                batch_size=batch_size,
                yes=False,
                interactive=False,
            )
            if job.state in (REFUSED, AWAITING):
                typer.echo(f"not rolled out: {path} (fix the cause, then `clik models activate {path}`)", err=True)
        if once:
            return
        time.sleep(interval)
