"""Re-index: encode every known image with a new model version, then switch to it.

Pure logic over the store, no Celery (tasks.py and the CLI drive it). The work list is
``store.missing_vectors(version)``: images of encoded products lacking a vector for the new
version, so a run killed at any point and started again does only the rest. Steps:

1. fill: chunks of (hash, source) -> fetch, check the bytes still have that hash, decode,
   one forward pass per chunk, ``put_vectors(version)``; progress is written to the store
   after every chunk as the job record ``reindex:<version>`` (readable by the CLI / API).
2. gate (worker/rollout.py): the new version must cover the catalogue as well as the active
   one, and pass the canary / confirmation the policy asks for; otherwise the job ends
   ``refused`` (or waits in ``awaiting_confirmation``) and the active version is untouched.
3. switch: every exhibition's topic query and packed block for the new version are computed
   (worker/precompute.py), then ``activate(version)`` (atomic: rankings move to the new version at once), then one
   more fill pass for images ingested with the old version while the last chunks ran.
4. the previous version and its vectors stay (``switched``: ``clik models rollback`` is an
   instant switch back) until they are dropped: by ``clik models drop``, by an activation with
   ``drop_previous``, or in a Celery deployment after the grace period if the new version is
   still active and covers what the previous one did (state ``done``). A FAISS catalogue index,
   where one is kept, is per version (indexer/search_index.py).

States (``ReindexState``): filling -> switched -> done, or filling -> refused, or filling ->
awaiting_confirmation -> switched. A new activation of a version whose last job ended (refused, or switched away
from) starts a new job.

An image that cannot be re-encoded (source gone, content changed since it was encoded, corrupt)
is *skipped* with its reason in the job record and not tried again by later chunks; its
products keep their status and show as pending in rankings of the new version.

Two drivers: ``run`` (in process: one loop of chunks) and the fan-out below (Celery: a
coordinator hands chunks to every worker on the queue; see ``plan_chunks`` and docs/worker.md).
The fan-out's coordinator is ``Coordinator.step``: one check per ``clik.reindex`` task run, which
hands chunks out, gates, switches and queues its own continuation through a ``ReindexDispatch``
(Celery's, in worker/tasks.py: the tasks there only check their messages and call in here).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from clik.image_pipeline import ImageItem
from clik.image_source import FetchLimits
from indexer.errors import StoreError, VersionInUse, VersionNotFound
from indexer.records import VersionState
from indexer.store import VectorStore
from worker import canary
from worker.encode import EncoderCache, pipeline_for
from worker.rollout import REFUSE, SWITCH as SWITCH_NOW, Decision, RolloutPolicy, coverage_gate, decide
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class ReindexState(StrEnum):
    """The states of a re-index job (its record's ``state``; strings in the stored JSON).

    FILLING -> SWITCHED -> DONE; FILLING -> REFUSED; FILLING -> AWAITING_CONFIRMATION -> SWITCHED.
    """

    FILLING = "filling"  # encoding the images with the new version; the active one is untouched
    SWITCHED = "switched"  # the new version is active; the previous one is kept for a rollback
    DONE = "done"  # the previous version and its vectors were dropped
    REFUSED = "refused"  # the gate said no: nothing was switched (the decision says why)
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # the gate passed; a person must confirm


class ChunkState(StrEnum):
    """A fan-out chunk's states: QUEUED -> RUNNING -> DONE."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


# The short names the drivers (the coordinator, the CLI) use.
FILLING, SWITCHED, DONE = ReindexState.FILLING, ReindexState.SWITCHED, ReindexState.DONE
REFUSED, AWAITING = ReindexState.REFUSED, ReindexState.AWAITING_CONFIRMATION
CHUNK_QUEUED, CHUNK_RUNNING, CHUNK_DONE = ChunkState.QUEUED, ChunkState.RUNNING, ChunkState.DONE


def job_id(version: str) -> str:
    return f"reindex:{version}"


def chunk_job_id(version: str, chunk_id: str) -> str:
    return f"reindex:{version}:chunk:{chunk_id}"


@dataclass
class ReindexProgress:
    version: str
    previous: str | None = None  # the version active when the job started (kept for a rollback)
    state: str = FILLING  # a ReindexState
    total: int = 0  # images to encode when the job (or its resumption) started, plus done
    done: int = 0  # vectors written by this job
    skipped: dict[str, str] = field(default_factory=dict)  # image hash -> reason
    chunks: int = 0  # chunks finished (and, in a fan-out, counted by the coordinator)
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    # Fan-out only (Celery). Chunks handed to the workers and not counted yet: id -> planned at.
    open_chunks: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)  # worker name -> images it encoded
    coordinator: str = ""  # token of the coordinator run allowed to continue (Coordinator.step)
    checked_at: float = 0.0  # last coordinator check
    in_flight: int = 0  # chunks handed out and not finished (filled in by load())
    # The rollout gate (worker/rollout.py): its last message and figures, the canary report.
    decision: str = ""
    coverage: dict = field(default_factory=dict)
    canary: dict | None = None
    confirmed: bool = False  # someone confirmed the switch (policy.require_confirmation)
    keep_previous: bool = False  # never drop the previous version automatically
    switched_at: float | None = None

    @classmethod
    def load(cls, store: VectorStore, version: str) -> ReindexProgress | None:
        """The job as a user should see it: the record plus the chunks finished since the
        coordinator's last check (read-only view: never save() it, or they count twice)."""
        progress = load_record(store, version)
        if progress is None or not progress.open_chunks:
            return progress
        progress.in_flight = 0
        for chunk_id in progress.open_chunks:
            chunk = ChunkRecord.load(store, version, chunk_id)
            if chunk is not None and chunk.state == CHUNK_DONE:
                progress.count_chunk(chunk)
            else:
                progress.in_flight += 1
        progress.total = max(progress.total, progress.done + len(progress.skipped))
        return progress

    def save(self, store: VectorStore) -> None:
        self.updated_at = time.time()
        store.put_job(job_id(self.version), asdict(self))

    def count_chunk(self, chunk: ChunkRecord) -> None:
        self.done += chunk.done
        self.skipped.update(chunk.skipped)
        self.chunks += 1
        if chunk.worker:
            self.workers[chunk.worker] = self.workers.get(chunk.worker, 0) + chunk.done


def load_record(store: VectorStore, version: str) -> ReindexProgress | None:
    """The stored job record as it is (what the coordinator reads, updates and saves)."""
    record = store.get_job(job_id(version))
    if not record:
        return None
    progress = ReindexProgress(**record)
    progress.state = ReindexState(progress.state)  # an unknown state fails here, not later
    return progress


@dataclass
class ChunkRecord:
    """One fan-out chunk, record ``reindex:<version>:chunk:<id>``: written by the coordinator
    when it hands the chunk out, then only by the worker running it (no shared counter to race
    on). The coordinator adds finished chunks into the job record."""

    version: str
    chunk_id: str
    hashes: list[str] = field(default_factory=list)  # dropped once done (only needed in flight)
    planned_at: float = field(default_factory=time.time)
    state: str = CHUNK_QUEUED  # a ChunkState
    worker: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    done: int = 0  # vectors written
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, store: VectorStore, version: str, chunk_id: str) -> ChunkRecord | None:
        record = store.get_job(chunk_job_id(version, chunk_id))
        return cls(**record) if record else None

    def save(self, store: VectorStore) -> None:
        store.put_job(chunk_job_id(self.version, self.chunk_id), asdict(self))

    def lease_ends(self, lease_s: float) -> float:
        # A chunk waiting in the queue is leased from when it was planned, a running one from
        # when it started: a long queue does not expire chunks nobody has begun.
        return (self.started_at or self.planned_at) + lease_s


@dataclass(frozen=True)
class ReindexOptions:
    chunk_size: int = 256  # hashes per chunk: one forward pass, one put_vectors, one progress write
    decode_threads: int = 1
    transient_attempts: int = 3  # tries per image for timeouts / 5xx before skipping it
    transient_backoff_s: float = 0.5


def start(store: VectorStore, version: str, retry_skipped: bool = False) -> ReindexProgress:
    """Load or create the job record; the version must be registered (with its bundle).

    A job that ended without making the version active (refused), or whose version is no
    longer the active one (rolled back or superseded), is replaced by a new job: activating
    a version again always means "make it active now". Skipped images are retried then."""
    target = store.get_version(version)  # VersionNotFound for an unknown version
    progress = load_record(store, version)
    ended = progress is not None and (
        progress.state == REFUSED or (progress.state in (SWITCHED, DONE) and not target.active)
    )
    if progress is None or ended:
        active = store.active_version()
        progress = ReindexProgress(version=version, previous=active.name if active and active.name != version else None)
    if retry_skipped:
        progress.skipped = {}
    if progress.state == FILLING:
        collect_chunks(store, progress)  # a fan-out's finished chunks, before counting what is left
        # One scan for the progress total (none when the counts say nothing is missing: a
        # rollback to a version that still has its vectors); resuming counts only what is left.
        missing = 0 if nothing_missing(store, version) else len(_work(store, version, progress, limit=None))
        progress.total = progress.done + missing
    progress.save(store)
    return progress


def nothing_missing(store: VectorStore, version: str) -> bool:
    """Every encoded product has a vector in `version` (one coverage read, no scan: on Redis the
    counts are kept by the store's scripts)."""
    cov = store.coverage([version])
    return cov.covered[version] == cov.encoded


def _work(store: VectorStore, version: str, progress: ReindexProgress, limit: int | None) -> list[tuple[str, str]]:
    # Ask for as many more as there are skipped hashes: the rest can never hide behind them.
    ask = 2**31 - 1 if limit is None else limit + len(progress.skipped)
    items = [item for item in store.missing_vectors(version, limit=ask) if item[0] not in progress.skipped]
    return items if limit is None else items[:limit]


def encode_chunk(
    store: VectorStore,
    version: str,
    items: Sequence[tuple[str, str]],
    encoders: EncoderCache,
    limits: FetchLimits,
    options: ReindexOptions = ReindexOptions(),
) -> tuple[int, dict[str, str]]:
    """Encode (hash, source) items for `version`: (vectors written, {hash: reason skipped})."""
    encoder = encoders.get(store.get_version(version))
    pipeline = pipeline_for(
        encoders,
        limits,
        options.decode_threads,
        read_attempts=options.transient_attempts,
        retry_backoff_s=options.transient_backoff_s,
    )
    read = pipeline.read([ImageItem(digest, source) for digest, source in items])
    skipped = {item.key: item.reason for item in read if not item.ok}
    ready = []
    for item in read:
        if item.ok and item.digest != item.key:
            skipped[item.key] = f"image at {item.source} changed since it was encoded"
        elif item.ok:
            ready.append(item)
    written = 0
    for batch in pipeline.encode(
        ready, encoder.transform, encoder.encode_pixels, encoder.batch_size, encoder.pins_memory
    ):
        store.put_vectors(version, [(item.key, vec) for item, vec in zip(batch.items, batch.vectors)])
        written += len(batch.items)
    skipped.update({item.key: item.reason for item in ready if not item.ok})
    return written, skipped


def fill(
    store: VectorStore,
    progress: ReindexProgress,
    encoders: EncoderCache,
    limits: FetchLimits,
    options: ReindexOptions = ReindexOptions(),
    on_progress: Callable[[ReindexProgress], None] | None = None,
    deadline: float | None = None,
) -> bool:
    """Encode chunks until nothing is missing (True) or time.monotonic() passes `deadline`."""
    if nothing_missing(store, progress.version):
        return True
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return False
        items = _work(store, progress.version, progress, options.chunk_size)
        if not items:
            return True
        written, skipped = encode_chunk(store, progress.version, items, encoders, limits, options)
        progress.done += written
        progress.skipped.update(skipped)
        progress.chunks += 1
        progress.total = max(progress.total, progress.done + len(progress.skipped))
        progress.save(store)
        if skipped:
            log.warning("re-index %s skipped %d images: %s", progress.version, len(skipped), skipped)
        if on_progress:
            on_progress(progress)


def gate(
    store: VectorStore,
    progress: ReindexProgress,
    policy: RolloutPolicy,
    topic_sides: Callable[[str], object] | None = None,
    confirm: Callable[[Decision], bool] | None = None,
) -> Decision:
    """Ask the rollout gate (fill finished); a refusal or a wait is recorded in the job."""
    active = store.active_version()
    active_name = active.name if active else None

    def run_canary() -> dict:
        return canary.run_canary(store, active_name, progress.version, topic_sides, policy.canary_exhibitions).as_dict()

    can_compare = topic_sides is not None and active_name and active_name != progress.version
    decision = decide(
        store,
        progress.version,
        active_name,
        progress.skipped,
        policy,
        run_canary if can_compare else None,
        confirmed=progress.confirmed,
        confirm=confirm,
    )
    progress.decision, progress.coverage, progress.canary = decision.message, decision.coverage, decision.canary
    if decision.action == SWITCH_NOW:
        progress.confirmed = progress.confirmed or policy.require_confirmation
    else:
        progress.state = REFUSED if decision.action == REFUSE else AWAITING
        log.warning("re-index %s: %s", progress.version, decision.message)
    progress.save(store)
    return decision


def switch(store: VectorStore, progress: ReindexProgress, prepare: Callable[[str], object] | None = None) -> None:
    """Make the new version the active one (atomic in the store). `prepare(version)` runs just
    before (worker.precompute.precompute_all: every exhibition's topic query and block for the
    new version, so the first reads after the switch do not pay for them); a failure there is
    logged and does not hold the switch back (reads then compute what is missing)."""
    if prepare is not None:
        try:
            prepare(progress.version)
        except (StoreError, OSError, ValueError, RuntimeError) as exc:
            log.warning("re-index %s: precompute before the switch failed: %s", progress.version, exc)
    store.activate(progress.version)
    progress.state = SWITCHED
    progress.switched_at = time.time()
    # Nothing is missing, so a fan-out chunk still out is a duplicate (or lost): stop tracking it.
    progress.open_chunks = {}
    progress.in_flight = 0
    progress.save(store)


def drop_previous(store: VectorStore, progress: ReindexProgress) -> None:
    """Drop the version that was active before; safe to call again (see also drop_if_healthy)."""
    previous = progress.previous
    if previous and previous != progress.version:
        try:
            store.drop_version(previous)
        except VersionNotFound:
            pass  # dropped by an earlier run
        except VersionInUse:
            log.warning("version %s is active again; not dropped", previous)
    progress.state = DONE
    progress.save(store)


def drop_if_healthy(store: VectorStore, progress: ReindexProgress, policy: RolloutPolicy) -> bool:
    """Drop the previous version only while the new one is still active and still covers what
    the previous one covers (the same bar as the gate); True when dropped (or nothing to drop)."""
    if progress.state != SWITCHED or progress.keep_previous:
        return False
    active = store.active_version()
    if active is None or active.name != progress.version:
        log.warning("re-index %s: no longer the active version; %s kept", progress.version, progress.previous)
        return False
    if progress.previous:
        try:
            store.get_version(progress.previous)
        except VersionNotFound:
            drop_previous(store, progress)
            return True
        check = coverage_gate(store, progress.version, progress.previous, {}, policy)
        if check.action != SWITCH_NOW:
            log.warning(
                "re-index %s: not healthy, %s kept: %s",
                progress.version,
                progress.previous,
                check.message.splitlines()[0],
            )
            return False
    drop_previous(store, progress)
    return True


def run(
    store: VectorStore,
    version: str,
    encoders: EncoderCache,
    limits: FetchLimits,
    options: ReindexOptions = ReindexOptions(),
    policy: RolloutPolicy = RolloutPolicy(),
    drop_previous_version: bool = False,
    on_progress: Callable[[ReindexProgress], None] | None = None,
    retry_skipped: bool = False,
    topic_sides: Callable[[str], object] | None = None,
    confirm: Callable[[Decision], bool] | None = None,
    prepare: Callable[[str], object] | None = None,
) -> ReindexProgress:
    """The whole job synchronously (in-process / CLI): fill, gate, switch. The previous version
    is kept for a rollback unless ``drop_previous_version``. Idempotent: a finished job only
    re-checks that nothing is missing. Returns the job (state refused / awaiting_confirmation
    when the gate said no; then nothing was switched)."""
    progress = start(store, version, retry_skipped)
    if on_progress:
        on_progress(progress)
    if progress.state in (FILLING, AWAITING):
        if progress.state == FILLING:
            store.set_version_state(version, VersionState.FILLING)
            fill(store, progress, encoders, limits, options, on_progress)
        if gate(store, progress, policy, topic_sides, confirm).action != SWITCH_NOW:
            return progress
        switch(store, progress, prepare)
    fill(store, progress, encoders, limits, options, on_progress)  # stragglers of the old version
    if progress.state == SWITCHED and drop_previous_version:
        drop_if_healthy(store, progress, policy)
    return progress


# -- fan-out (Celery): a coordinator plans chunks, every worker on the queue encodes them ----------
@dataclass(frozen=True)
class FanoutOptions:
    chunk_size: int = 256  # hashes per chunk task
    max_in_flight: int = 32  # chunks handed out and unfinished at any time (the queue stays short)
    lease_s: float = 600.0  # a chunk unfinished this long after it started (or was queued) is planned again


def collect_chunks(store: VectorStore, progress: ReindexProgress) -> dict[str, ChunkRecord | None]:
    """Add finished chunks into the job record (each one once) and return the open ones
    (None: its record was never written, a coordinator died between the two writes)."""
    still_open: dict[str, ChunkRecord | None] = {}
    for chunk_id in list(progress.open_chunks):
        chunk = ChunkRecord.load(store, progress.version, chunk_id)
        if chunk is not None and chunk.state == CHUNK_DONE:
            progress.count_chunk(chunk)
            del progress.open_chunks[chunk_id]
            if chunk.skipped:
                log.warning("re-index %s skipped %d images: %s", progress.version, len(chunk.skipped), chunk.skipped)
        else:
            still_open[chunk_id] = chunk
    progress.total = max(progress.total, progress.done + len(progress.skipped))
    return still_open


def plan_chunks(
    store: VectorStore, progress: ReindexProgress, options: FanoutOptions = FanoutOptions()
) -> list[tuple[ChunkRecord, list[tuple[str, str]]]] | None:
    """One coordinator check: count finished chunks, then plan new ones for the missing images
    that no live chunk holds. Returns the new chunks with their (hash, source) items (records
    written, the job record saved listing them: the caller sends one task each), [] when all
    remaining work is in flight, None when nothing is missing any more and no live chunk is out
    (time to switch)."""
    now = time.time()
    still_open = collect_chunks(store, progress)
    held: set[str] = set()  # hashes of live chunks: planning them again would duplicate work
    live = 0
    for chunk_id, chunk in still_open.items():
        planned_at = progress.open_chunks[chunk_id]
        lease_ends = chunk.lease_ends(options.lease_s) if chunk else planned_at + options.lease_s
        if now < lease_ends:
            live += 1
            held.update(chunk.hashes if chunk else ())
        else:
            # Expired (its worker died, or the message was lost): its images are planned again.
            # It stays listed so that, should it finish after all, its count is not lost.
            log.info(
                "re-index %s: chunk %s expired (%s), planning its images again",
                progress.version,
                chunk_id,
                chunk.state if chunk else "never written",
            )
    progress.in_flight = len(still_open)
    want = max(options.max_in_flight - live, 0)
    ask = max(want, 1) * options.chunk_size + len(held) + len(progress.skipped)
    missing = [item for item in store.missing_vectors(progress.version, limit=ask) if item[0] not in progress.skipped]
    progress.checked_at = now
    if not missing:
        progress.save(store)
        # A live chunk may have written its vectors but not yet its record: wait for its count.
        return [] if live else None
    fresh = [item for item in missing if item[0] not in held][: want * options.chunk_size]
    chunks = []
    for start_at in range(0, len(fresh), options.chunk_size):
        part = fresh[start_at : start_at + options.chunk_size]
        chunk = ChunkRecord(progress.version, uuid.uuid4().hex[:12], hashes=[h for h, _ in part], planned_at=now)
        chunks.append((chunk, part))
    # The job record lists a chunk before its record and its task exist: a coordinator killed in
    # between leaves an entry that expires after the lease, never a chunk nobody counts.
    for chunk, _ in chunks:
        progress.open_chunks[chunk.chunk_id] = now
    progress.in_flight = len(progress.open_chunks)
    progress.save(store)
    for chunk, _ in chunks:
        chunk.save(store)
    return chunks


def run_chunk(
    store: VectorStore,
    version: str,
    chunk_id: str,
    items: Sequence[tuple[str, str]],
    worker: str,
    encoders: EncoderCache,
    limits: FetchLimits,
    options: ReindexOptions = ReindexOptions(),
) -> ChunkRecord | None:
    """Encode one fan-out chunk and write its record; None when there is nothing to do (the
    job switched or was removed, or this chunk already finished: a redelivered message)."""
    progress = load_record(store, version)
    if progress is None or progress.state != FILLING:
        return None
    chunk = ChunkRecord.load(store, version, chunk_id)
    if chunk is not None and chunk.state == CHUNK_DONE:
        return None
    if chunk is None:  # the coordinator died before writing it; the job record lists it
        chunk = ChunkRecord(version, chunk_id, hashes=[h for h, _ in items])
    chunk.state, chunk.worker, chunk.started_at = CHUNK_RUNNING, worker, time.time()
    chunk.save(store)
    # Redelivered or planned again after a lease: encode only what is still missing.
    todo = [(h, s) for h, s in items if not store.has_vector(version, h)]
    written, skipped = encode_chunk(store, version, todo, encoders, limits, options) if todo else (0, {})
    chunk.state, chunk.finished_at = CHUNK_DONE, time.time()
    chunk.done, chunk.skipped, chunk.hashes = written, skipped, []
    chunk.save(store)
    return chunk


def run_reindex(
    store: VectorStore,
    version: str,
    encoders: EncoderCache,
    limits: FetchLimits,
    on_progress: Callable | None = None,
    chunk_size: int = 256,
    decode_threads: int = 2,
    policy: RolloutPolicy | None = None,
    drop_previous: bool = False,
    retry_skipped: bool = False,
    topic_sides=None,
    confirm=None,
) -> ReindexProgress:
    """Re-index synchronously for `version` (registered with its bundle): fill, gate, precompute
    every exhibition's topic and block for it (worker/precompute.py), switch; the previous
    version is kept for a rollback unless ``drop_previous``. ``run`` with its options spelled as
    arguments, for the CLI and the single-machine stack.
    ``on_progress(ReindexProgress)`` after each chunk (a tqdm bar in the CLI). Returns the job:
    check ``state`` (``refused`` / ``awaiting_confirmation``: nothing was switched)."""
    from worker import precompute  # it reads bundles' text sides: loaded only when a job runs

    options = ReindexOptions(chunk_size=chunk_size, decode_threads=decode_threads)
    sides = precompute.TopicSides(store, device=encoders.device)
    return run(
        store,
        version,
        encoders,
        limits,
        options,
        policy=policy or RolloutPolicy(),
        drop_previous_version=drop_previous,
        on_progress=on_progress,
        retry_skipped=retry_skipped,
        topic_sides=topic_sides,
        confirm=confirm,
        prepare=lambda v: precompute.precompute_all(store, v, sides),
    )


# -- the coordinator's step (Celery): what one clik.reindex task run does ---------------------------
class ReindexDispatch(Protocol):
    """How the coordinator hands work to the workers; worker/tasks.py sends each as a Celery task
    on the queue (FIFO, so a continuation sent after chunks is taken after them)."""

    def send_chunk(self, version: str, chunk_id: str, items: list[tuple[str, str]]) -> None: ...

    def send_continuation(self, version: str, token: str, wait_s: float) -> None: ...

    def send_drop(self, version: str, countdown_s: float) -> None: ...


@dataclass(frozen=True)
class CoordinatorOptions:
    fanout: FanoutOptions = FanoutOptions()
    fill: ReindexOptions = ReindexOptions()  # the stragglers the coordinator encodes itself
    policy: RolloutPolicy = RolloutPolicy()
    check_s: float = 2.0  # the wait between two checks while every chunk left is in flight
    task_s: float = 300.0  # how long one run may fill stragglers before it continues in a new one
    drop_grace_s: float = 900.0  # after the switch, before the previous version is dropped

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> CoordinatorOptions:
        return cls(
            fanout=FanoutOptions(
                chunk_size=settings.reindex_chunk_size,
                max_in_flight=settings.reindex_chunks_in_flight,
                lease_s=settings.reindex_chunk_lease_s,
            ),
            fill=ReindexOptions(chunk_size=settings.reindex_chunk_size, decode_threads=settings.decode_threads),
            policy=settings.rollout_policy(),
            check_s=settings.reindex_check_s,
            task_s=settings.reindex_task_s,
            drop_grace_s=settings.reindex_drop_grace_s,
        )


def register_bundle(store: VectorStore, version: str, bundle_uri: str) -> None:
    """Register `version` from its bundle (the bundle must hash to that version)."""
    from clik.checkpoint import read_bundle_info  # reads the bundle's config only

    info = read_bundle_info(bundle_uri)
    if info.version != version:
        raise ValueError(f"bundle at {bundle_uri} is version {info.version}, not {version}")
    store.register_version(version, info.embed_dim, bundle_uri=str(bundle_uri))


@dataclass
class Coordinator:
    """One check of a fan-out re-index (`step`), with what it needs to hand work out, gate and
    switch. `limits` and `topic_sides` are called only when a step gets that far (each reads
    the store or loads text sides)."""

    store: VectorStore
    dispatch: ReindexDispatch
    options: CoordinatorOptions
    encoders: EncoderCache
    limits: Callable[[], FetchLimits]
    topic_sides: Callable[[], Callable[[str], object] | None]  # the canary's (worker.canary)
    prepare: Callable[[str], object] | None = None  # before the switch (worker.precompute)

    def step(self, version: str, retry_skipped: bool = False, token: str | None = None, wait_s: float = 0.0) -> dict:
        """Start or resume the job (no `token`: sent by a user), or continue it (the token
        the job's record names; a run with another token is a stale duplicate and stops).
        Each step counts the finished chunks, hands out new ones for what is missing and queues
        its own continuation behind them; when nothing is missing: gate, switch, fill the
        stragglers, schedule the drop of the previous version. Returns the run's report."""
        store = self.store
        if token is None:
            try:
                progress = start(store, version, retry_skipped)
            except VersionNotFound:
                raise ValueError(f"model version {version} is not registered: pass bundle_uri") from None
        else:
            # The wait happens here rather than as a countdown: a countdown message sits in one
            # worker's memory while it encodes chunks, and dies with it until the broker redelivers.
            time.sleep(min(max(float(wait_s), 0.0), self.options.check_s))
            loaded = load_record(store, version)
            if loaded is None or loaded.coordinator != token:
                return {"version": version, "superseded": True}
            progress = loaded
        if progress.state == REFUSED:
            return self._stopped(progress)
        if progress.state == AWAITING and not progress.confirmed:
            return self._stopped(progress)
        if progress.state == AWAITING:  # confirmed (clik models confirm): gate again, switch
            if not self.gate(progress):
                return self._stopped(progress)
            switch(store, progress, self.prepare)
        if progress.state == FILLING:
            chunks = plan_chunks(store, progress, self.options.fanout)
            if chunks is not None:
                for chunk, items in chunks:
                    self.dispatch.send_chunk(version, chunk.chunk_id, items)
                # Queued behind the chunks just sent (FIFO): it checks again once they were taken.
                self.continue_later(progress, wait_s=0.0 if chunks else self.options.check_s)
                return {
                    "version": version,
                    "state": progress.state,
                    "done": progress.done,
                    "total": progress.total,
                    "planned": len(chunks),
                    "in_flight": progress.in_flight,
                    "continued": True,
                }
            if not self.gate(progress):
                return self._stopped(progress)
            switch(store, progress, self.prepare)
        deadline = time.monotonic() + self.options.task_s
        # Stragglers ingested with the old version while the last chunks ran: few, done here.
        if not fill(store, progress, self.encoders, self.limits(), self.options.fill, deadline=deadline):
            self.continue_later(progress, wait_s=0.0)
            return {
                "version": version,
                "state": progress.state,
                "done": progress.done,
                "total": progress.total,
                "continued": True,
            }
        if progress.state == SWITCHED:
            self.dispatch.send_drop(version, self.options.drop_grace_s)
        return {
            "version": version,
            "state": progress.state,
            "done": progress.done,
            "total": progress.total,
            "skipped": progress.skipped,
            "continued": False,
        }

    def gate(self, progress: ReindexProgress) -> bool:
        """The rollout gate before the switch (coverage, canary, confirmation); False: the job was
        refused or waits for a confirmation (recorded in the job; nothing switched)."""
        return gate(self.store, progress, self.options.policy, self.topic_sides()).action == SWITCH_NOW

    def continue_later(self, progress: ReindexProgress, wait_s: float) -> None:
        # Sent before the record names its token: a run killed in between is redelivered with the
        # token still current and goes on, and this continuation then finds itself superseded.
        token = uuid.uuid4().hex
        self.dispatch.send_continuation(progress.version, token, wait_s)
        progress.coordinator = token
        progress.save(self.store)

    @staticmethod
    def _stopped(progress: ReindexProgress) -> dict:
        return {"version": progress.version, "state": progress.state, "decision": progress.decision}


def drop_after_grace(store: VectorStore, version: str, policy: RolloutPolicy) -> str | None:
    """After the grace period: drop the version that was active before `version`'s re-index
    (only while `version` is healthy: drop_if_healthy). Returns the version dropped, if any."""
    progress = load_record(store, version)
    if progress is None or progress.state == FILLING:
        return None
    return progress.previous if drop_if_healthy(store, progress, policy) else None
