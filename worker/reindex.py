"""Re-index: encode every known image with a new model version, then switch to it.

Pure logic over the store, no Celery (tasks.py and the CLI drive it). The work list is
``store.missing_vectors(version)``: images of encoded products lacking a vector for the new
version, so a run killed at any point and started again does only the rest. Steps:

1. fill: chunks of (hash, source) -> fetch, check the bytes still have that hash, decode,
   one forward pass per chunk, ``put_vectors(version)``; progress is written to the store
   after every chunk as the job record ``reindex:<version>`` (readable by the CLI / API).
2. switch: ``activate(version)`` (atomic: rankings move to the new version at once), then one
   more fill pass for images ingested with the old version while the last chunks ran.
3. drop: after a grace period (readers finishing with the old version) the previous version
   and its vectors are dropped. A FAISS catalogue index, where one is kept, is per version
   (indexer/catalogue.py): rebuild it for the new version from iter_product_vectors after 2.

An image that cannot be re-encoded (source gone, content changed since it was encoded, corrupt)
is *skipped* with its reason in the job record and not tried again by later chunks; its
products keep their status and show as pending in rankings of the new version.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from clik.image_source import FetchLimits, ImageLoadError, content_hash, decode_image, read_source
from indexer.errors import VersionInUse, VersionNotFound
from indexer.records import VersionState
from indexer.store import VectorStore
from worker.encode import EncoderCache, parallel_map, stack_for

log = logging.getLogger(__name__)

FILLING, SWITCHED, DONE = "filling", "switched", "done"


def job_id(version: str) -> str:
    return f"reindex:{version}"


@dataclass
class ReindexProgress:
    version: str
    previous: str | None = None  # the version active when the job started; dropped at the end
    state: str = FILLING  # filling -> switched -> done
    total: int = 0  # images to encode when the job (or its resumption) started, plus done
    done: int = 0  # vectors written by this job
    skipped: dict[str, str] = field(default_factory=dict)  # image hash -> reason
    chunks: int = 0
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, store: VectorStore, version: str) -> ReindexProgress | None:
        record = store.get_job(job_id(version))
        return cls(**record) if record else None

    def save(self, store: VectorStore) -> None:
        self.updated_at = time.time()
        store.put_job(job_id(self.version), asdict(self))


@dataclass(frozen=True)
class ReindexOptions:
    chunk_size: int = 256  # hashes per chunk: one forward pass, one put_vectors, one progress write
    decode_threads: int = 1
    transient_attempts: int = 3  # tries per image for timeouts / 5xx before skipping it
    transient_backoff_s: float = 0.5


def start(store: VectorStore, version: str, retry_skipped: bool = False) -> ReindexProgress:
    """Load or create the job record; the version must be registered (with its bundle)."""
    store.get_version(version)  # VersionNotFound for an unknown version
    progress = ReindexProgress.load(store, version)
    if progress is None:
        active = store.active_version()
        progress = ReindexProgress(version=version,
                                   previous=active.name if active and active.name != version else None)
    if retry_skipped:
        progress.skipped = {}
    if progress.state == FILLING:
        # One scan for the progress total; resuming counts only what is left.
        progress.total = progress.done + len(_work(store, version, progress, limit=None))
    progress.save(store)
    return progress


def _work(store: VectorStore, version: str, progress: ReindexProgress,
          limit: int | None) -> list[tuple[str, str]]:
    # Ask for as many more as there are skipped hashes: the rest can never hide behind them.
    ask = 2**31 - 1 if limit is None else limit + len(progress.skipped)
    items = [item for item in store.missing_vectors(version, limit=ask) if item[0] not in progress.skipped]
    return items if limit is None else items[:limit]


def encode_chunk(store: VectorStore, version: str, items: Sequence[tuple[str, str]],
                 encoders: EncoderCache, limits: FetchLimits,
                 options: ReindexOptions = ReindexOptions()) -> tuple[int, dict[str, str]]:
    """Encode (hash, source) items for `version`: (vectors written, {hash: reason skipped})."""
    encoder = encoders.get(store.get_version(version))
    skipped: dict[str, str] = {}

    def load(item: tuple[str, str]) -> torch.Tensor | None:
        digest, source = item
        for attempt in range(options.transient_attempts):
            try:
                data = read_source(source, limits)
                break
            except ImageLoadError as exc:
                if not exc.transient or attempt + 1 == options.transient_attempts:
                    skipped[digest] = exc.reason
                    return None
                time.sleep(options.transient_backoff_s * 2**attempt)
        if content_hash(data) != digest:
            skipped[digest] = f"image at {source} changed since it was encoded"
            return None
        try:
            return encoder.transform(decode_image(data, limits))
        except ImageLoadError as exc:
            skipped[digest] = exc.reason
            return None

    tensors = parallel_map(load, list(items), options.decode_threads)
    ready = [(item[0], t) for item, t in zip(items, tensors) if t is not None]
    if ready:
        vectors = encoder.encode_pixels(stack_for(encoder, [t for _, t in ready]))
        store.put_vectors(version, [(digest, vec) for (digest, _), vec in zip(ready, vectors)])
    return len(ready), skipped


def fill(store: VectorStore, progress: ReindexProgress, encoders: EncoderCache, limits: FetchLimits,
         options: ReindexOptions = ReindexOptions(),
         on_progress: Callable[[ReindexProgress], None] | None = None,
         deadline: float | None = None) -> bool:
    """Encode chunks until nothing is missing (True) or time.monotonic() passes `deadline`."""
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


def switch(store: VectorStore, progress: ReindexProgress) -> None:
    """Make the new version the active one (atomic in the store)."""
    store.activate(progress.version)
    progress.state = SWITCHED
    progress.save(store)


def drop_previous(store: VectorStore, progress: ReindexProgress) -> None:
    """Drop the version that was active before; safe to call again."""
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


def run(store: VectorStore, version: str, encoders: EncoderCache, limits: FetchLimits,
        options: ReindexOptions = ReindexOptions(), drop_grace_s: float = 0.0,
        on_progress: Callable[[ReindexProgress], None] | None = None,
        retry_skipped: bool = False) -> ReindexProgress:
    """The whole job synchronously (in-process / CLI). Idempotent: a finished job only
    re-checks that nothing is missing."""
    progress = start(store, version, retry_skipped)
    if on_progress:
        on_progress(progress)
    if progress.state == FILLING:
        store.set_version_state(version, VersionState.FILLING)
        fill(store, progress, encoders, limits, options, on_progress)
        switch(store, progress)
    fill(store, progress, encoders, limits, options, on_progress)  # stragglers of the old version
    if progress.state == SWITCHED:
        if drop_grace_s:
            time.sleep(drop_grace_s)
        drop_previous(store, progress)
    return progress
