"""Where PUT /products sends work (and PUT /exhibitions its precompute): a small protocol and
its Celery implementation.

The API must not import worker/, so it sends the task by name over the worker's broker.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from api.errors import QueueUnavailable
from indexer.contracts import DEFAULT_QUEUE, ENCODE_PRODUCTS as ENCODE_TASK, PRECOMPUTE_EXHIBITIONS, is_redis_url


@runtime_checkable
class EncodeQueue(Protocol):
    def submit(self, product_ids: list[str]) -> None:
        """Queue these products for encoding; raise QueueUnavailable when that is impossible."""


class CeleryEncodeQueue:
    """send_task("clik.encode_products", [ids]) to the worker's queue."""

    def __init__(
        self, broker_url: str, queue: str = DEFAULT_QUEUE, chunk: int = 64, connect_timeout_s: float = 2.0
    ) -> None:
        from celery import Celery

        self.queue, self.chunk = queue, chunk
        self.broker_url = broker_url
        self.app = Celery("clik-api", broker=broker_url, set_as_current=False)
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_timeout=connect_timeout_s,
            broker_connection_retry_on_startup=False,
        )
        # A broker that is down must answer a request quickly, not retry for minutes.
        self._retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

    def submit(self, product_ids: list[str]) -> None:
        for start in range(0, len(product_ids), self.chunk):
            try:
                self.app.send_task(
                    ENCODE_TASK,
                    args=[product_ids[start : start + self.chunk]],
                    queue=self.queue,
                    retry=True,
                    retry_policy=self._retry_policy,
                )
            except Exception as exc:  # kombu raises transport-specific errors
                raise QueueUnavailable(f"encode queue unavailable: {exc}") from exc  # shown without it

    def precompute(self, exhibition_ids: list[str]) -> None:
        """Ask a worker for these exhibitions' topic entries and packed blocks (api/precompute.py)."""
        try:
            self.app.send_task(
                PRECOMPUTE_EXHIBITIONS,
                args=[list(exhibition_ids)],
                queue=self.queue,
                retry=True,
                retry_policy=self._retry_policy,
                ignore_result=True,
            )
        except Exception as exc:  # kombu raises transport-specific errors
            raise QueueUnavailable(f"encode queue unavailable: {exc}") from exc

    def depth(self) -> int | None:
        """Messages waiting in the queue (None when the broker cannot say)."""
        from amqp.exceptions import ChannelError

        try:
            with self.app.connection_for_read() as conn:
                return int(conn.default_channel.queue_declare(self.queue, passive=True).message_count)
        except ChannelError:  # both transports: the queue does not exist (yet), so none wait
            return 0
        except Exception:  # broker unreachable: unknown
            return None

    def ping(self, timeout_s: float) -> str | None:
        """None when the broker answers within timeout_s, else why not (for /readyz: the
        reason is logged by the caller, not shown, as it may name the broker's address)."""
        try:
            if is_redis_url(self.broker_url):
                import redis

                client = redis.Redis.from_url(
                    self.broker_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
                )
                try:
                    client.ping()
                finally:
                    client.close()
            else:  # amqp and the rest: one connection, opened and closed
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout_s)
        except Exception as exc:  # transport-specific errors
            return f"{type(exc).__name__}: {exc}"
        return None

    def close(self) -> None:
        self.app.close()
