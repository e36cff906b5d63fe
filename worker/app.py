"""The Celery app: ``celery -A worker.app worker -Q clik --pool=solo`` (see docs/worker.md)."""

from __future__ import annotations

from celery import Celery

from worker.settings import WorkerSettings


def make_app(settings: WorkerSettings) -> Celery:
    app = Celery("clik", broker=settings.broker_url, backend=settings.result_backend, include=["worker.tasks"])
    app.conf.update(
        # A task is acknowledged after it ran: a worker killed mid-batch leaves it on the queue
        # and another worker runs it again (the writes are idempotent).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=settings.queue,
        task_routes={"clik.*": {"queue": settings.queue}},
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # Sized to the longest task (WorkerSettings.longest_task_s): a task still running is
        # never handed to a second worker; a killed one comes back after this long.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s()},
        worker_hijack_root_logger=False,
    )
    return app


settings = WorkerSettings()
app = make_app(settings)
