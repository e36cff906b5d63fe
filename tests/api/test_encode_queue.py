"""CeleryEncodeQueue on the real brokers (Redis and RabbitMQ): tasks land in the worker's queue
in chunks, the depth gauge counts them, a dead broker fails fast with QueueUnavailable."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from api.encode_queue import CeleryEncodeQueue, EncodeQueue
from api.errors import QueueUnavailable
from tests.support.api_server import free_port
from tests.support.services import BROKER_URL, delete_keys, redis_or_skip

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _amqp_or_skip() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"RabbitMQ unreachable ({exc})")


@pytest.mark.parametrize("broker", [pytest.param("redis", marks=pytest.mark.redis), "amqp"])
def test_tasks_reach_the_queue_in_chunks(broker):
    redis_or_skip() if broker == "redis" else _amqp_or_skip()
    url = BROKER_URL if broker == "redis" else AMQP_URL
    queue = CeleryEncodeQueue(url, f"clik-api-test-q-{uuid.uuid4().hex[:8]}", chunk=2)
    assert isinstance(queue, EncodeQueue)
    try:
        assert queue.depth() == 0
        queue.submit(["a", "b", "c"])
        # RabbitMQ counts a published message a moment later (no publisher confirms)
        deadline = time.monotonic() + 10
        while queue.depth() != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.depth() == 2  # [a, b] and [c]
        with queue.app.connection_for_read() as conn:
            message = conn.SimpleQueue(queue.queue).get(timeout=5)
            assert message.headers["task"] == "clik.encode_products"
            assert message.decode()[0] == [["a", "b"]]
            message.ack()
    finally:
        with queue.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue.queue)
        queue.close()
        if broker == "redis":  # kombu's Redis transport keeps the exchange binding key
            delete_keys(BROKER_URL, f"_kombu.binding.{queue.queue}")


def test_dead_broker_fails_fast():
    queue = CeleryEncodeQueue(f"redis://127.0.0.1:{free_port()}/0", "clik-api-test-dead")
    start = time.monotonic()
    with pytest.raises(QueueUnavailable):
        queue.submit(["a"])
    assert time.monotonic() - start < 10
    assert queue.depth() is None
