"""Prometheus metrics of one app (own registry, so several apps can live in one process), summed
over the uvicorn worker processes when PROMETHEUS_MULTIPROC_DIR is set (`clik serve --workers N`
sets it: clik_cli/commands/serve.py)."""

from __future__ import annotations

import os
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

# Representative rankings take ~1 ms warm; a cold model load or /rank takes seconds.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "clik_api_request_seconds",
            "Request latency by route template",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.topic_cache = Counter(
            "clik_api_topic_cache_total",
            "Topic query lookups: memory (LRU), store (shared cache), miss (encoded)",
            ["result"],
            registry=self.registry,
        )
        self.answers = Counter(
            "clik_api_answers_total",
            "Ranking answers sent by where their body came from: memory (this process), "
            "store (rendered by another process), computed",
            ["source"],
            registry=self.registry,
        )
        self.precompute = Counter(
            "clik_api_precompute_total",
            "Exhibition writes followed by a precompute: sent (to a worker), not_sent "
            "(broker down), warmed (this process), skipped; announced by a worker: "
            "rendered (here), claimed_elsewhere (then copied: its bytes, into this process), cached, not_active",
            ["result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "clik_api_errors_total",
            "Requests answered with an error, by kind",
            ["kind", "status"],
            registry=self.registry,
        )
        self.encodes_submitted = Counter(
            "clik_api_encodes_submitted_total", "Products sent to the encode queue", registry=self.registry
        )
        self._gauges: list[tuple[str, str, Callable[[], float | None]]] = []
        self.registry.register(_CallbackCollector(self._gauges))

    def gauge(self, name: str, doc: str, read: Callable[[], float | None]) -> None:
        """A value read at scrape time (None: not known right now, the sample is left out)."""
        self._gauges.append((name, doc, read))

    def render(self) -> bytes:
        """This process's metrics; under `clik serve --workers N` (PROMETHEUS_MULTIPROC_DIR set)
        the counters and histograms of every worker process, summed (prometheus_client's
        multiprocess mode: each process writes its values to files in that folder, and the one
        answering the scrape adds them up). The gauges read at scrape time are this process's
        reads of shared state (the broker, the store), or its own (loaded models)."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # a fresh one: the app's own would be counted twice
        multiprocess.MultiProcessCollector(registry, path=folder)
        registry.register(_CallbackCollector(self._gauges))
        return generate_latest(registry)


class _CallbackCollector:
    def __init__(self, gauges) -> None:
        self._gauges = gauges

    def describe(self):
        return []

    def collect(self):
        for name, doc, read in self._gauges:
            try:
                value = read()
            except Exception:
                value = None
            family = GaugeMetricFamily(name, doc)
            if value is not None:
                family.add_metric([], float(value))
            yield family


class MetricsMiddleware:
    """Pure ASGI (a BaseHTTPMiddleware costs a task per request): latency by route template."""

    def __init__(self, app, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.latency.labels(scope["method"], template, str(status[0])).observe(time.perf_counter() - start)
