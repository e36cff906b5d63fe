"""Typed worker settings, read from the environment (prefix ``CLIK_``)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.contracts import DEFAULT_QUEUE
from service_config.fetch import FetchSettings
from service_config.store import StoreSettings
from worker.rollout import RolloutPolicy


class WorkerSettings(StoreSettings, FetchSettings, BaseSettings):
    """Every field can be set as ``CLIK_<NAME>``; lists as JSON (``CLIK_FILE_ROOTS='["/data"]'``)."""

    model_config = SettingsConfigDict(env_prefix="CLIK_", extra="ignore")

    # Celery broker: Redis (default) or RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672//
    broker_url: str = "redis://127.0.0.1:6379/1"
    # Task results (counts per call); None keeps no results.
    result_backend: str | None = None
    queue: str = DEFAULT_QUEUE  # default queue the tasks are routed to
    # Redis broker only: a task not acknowledged in this time is delivered again (acks_late).
    # None: sized to the longest task (longest_task_s() + 60 s). Recovery of a killed drain does
    # not wait for it (pending leases, below); a killed re-index run does.
    visibility_timeout_s: int | None = Field(None, ge=1)

    # store_url, store_prefix: StoreSettings (default: the shared Redis)

    batch_size: int = Field(32, ge=1)  # images per forward pass
    device: str | None = None  # None: cuda when available, else cpu
    max_encoders: int = Field(2, ge=1)  # loaded model versions kept per process (rollover)
    # Threads fetching and decoding images (I/O and libjpeg release the GIL).
    decode_threads: int = Field(4, ge=1)
    # torch intra-op threads on CPU; None: cores - 1 (worker.device.default_cpu_threads). Also
    # ONNX Runtime's intra-op threads when the tower runs there.
    torch_threads: int | None = Field(None, ge=1)
    # What runs the image tower: "onnx" (exported once per model version, run by ONNX Runtime),
    # "torch" (eager), or "auto": ONNX Runtime on CPU, eager torch on CUDA. Auto because on the
    # 2-core dev box ONNX Runtime encodes 1.5-2x faster than eager channels-last fp32 with the
    # same vectors (docs/worker.md, benchmarks/towers.py --encode); on CUDA eager bf16 stays.
    image_backend: Literal["auto", "torch", "onnx"] = "auto"
    # Where the ONNX exports are kept (keyed by model version); None: $XDG_CACHE_HOME/clik/onnx.
    onnx_cache_dir: str | None = None
    # Decode JPEGs at reduced size (libjpeg's 1/2, 1/4, 1/8 scaling) when they are at least twice
    # the tower's input: several times less decode work for large photos, pixels slightly
    # different from a full decode. Off: catalogue photos here are already small (no gain).
    jpeg_draft: bool = False
    # Ingestion: a task also takes other products waiting in the pending set (Redis store only)
    # so many one-product events make few full forward passes.
    group_pending: bool = True
    # Seconds a queued drain waits before it starts (0: it simply runs after the tasks already
    # queued, which is enough to group a burst of events).
    batch_window_s: float = Field(0.0, ge=0)
    # A drain leases its batch for this long and renews the lease every third of it while it
    # works: a killed worker's products are claimable again this long after the kill.
    pending_lease_s: float = Field(15.0, ge=1)
    # One drain task claims no new batch after this long; a continuation drain goes on.
    drain_task_s: float = Field(120.0, gt=0)
    # Every worker looks this often for waiting products no drain has claimed or will look at
    # (a drain killed while no other was queued); 0 turns the sweep off.
    pending_sweep_s: float = Field(30.0, ge=0)
    # When products' vectors arrive, their exhibitions are precomputed again this many seconds
    # later, once per window however many batches touch them (worker/refresh.py); 0: never.
    refresh_window_s: int = Field(5, ge=0)

    # Re-index: hashes per chunk (one forward pass each), and how long the old version stays
    # after the switch before a Celery deployment drops it (if the new one is still active and
    # covers as much): the window in which `clik models rollback` is instant.
    reindex_chunk_size: int = Field(256, ge=1)
    reindex_drop_grace_s: float = Field(900.0, ge=0)

    # The rollout gate (worker/rollout.py), checked before every switch.
    # The new version must cover this share of the products the active version covers.
    rollout_min_coverage: float = Field(1.0, ge=0, le=1)
    rollout_canary_exhibitions: int = Field(20, ge=0)  # ranked by both versions first (0: no canary)
    rollout_min_top1_agreement: float = Field(0.0, ge=0, le=1)  # canary: share keeping its top product
    rollout_confirm: bool = False  # a person confirms each switch after the canary report
    # One re-index task run works this long, then enqueues its continuation: keep it well
    # under visibility_timeout_s so a long job is never redelivered while it still runs.
    reindex_task_s: float = Field(300.0, gt=0)
    # Re-index fan-out: the coordinator hands out at most this many chunk tasks at a time
    # (so product events queued meanwhile wait behind a few chunks, not the whole catalogue).
    reindex_chunks_in_flight: int = Field(32, ge=1)
    # When every remaining chunk is out, the coordinator waits this long before checking again.
    reindex_check_s: float = Field(2.0, gt=0)
    # A chunk not finished this long after it started (or was queued) is planned again: its
    # worker died. Keep it well above one chunk's encoding time, or chunks are done twice.
    reindex_chunk_lease_s: float = Field(600.0, gt=0)

    # Transient fetch errors: the task is retried for those products only.
    max_retries: int = Field(5, ge=0)
    retry_backoff_s: float = Field(2.0, ge=0)  # first delay; doubles per retry
    retry_backoff_max_s: float = 300.0

    def encoder_options(self) -> dict:
        """The EncoderCache keyword arguments these settings choose (backend, ONNX cache, draft)."""
        return {"backend": self.image_backend, "onnx_cache_dir": self.onnx_cache_dir, "jpeg_draft": self.jpeg_draft}

    def rollout_policy(self) -> RolloutPolicy:
        return RolloutPolicy(
            min_coverage=self.rollout_min_coverage,
            canary_exhibitions=self.rollout_canary_exhibitions,
            min_top1_agreement=self.rollout_min_top1_agreement,
            require_confirmation=self.rollout_confirm,
        )

    def longest_task_s(self) -> float:
        """An upper bound of one task's run: a drain (drain_task_s, then its last batch) or a
        re-index run (reindex_task_s, then its last chunk), each fetch at most fetch_deadline_s
        with decode_threads fetching at once."""

        def fetch_rounds(images: int) -> float:
            return math.ceil(images / self.decode_threads) * self.fetch_deadline_s

        drain = self.drain_task_s + fetch_rounds(self.batch_size)
        reindex = self.reindex_task_s + fetch_rounds(self.reindex_chunk_size)
        return max(drain, reindex)

    def broker_visibility_timeout_s(self) -> int:
        if self.visibility_timeout_s is not None:
            return self.visibility_timeout_s
        return int(self.longest_task_s()) + 60

    def retry_delay(self, retries: int) -> float:
        return min(self.retry_backoff_s * (2**retries), self.retry_backoff_max_s)
