"""`representative?unit=`: the answer of the arm a visitor belongs to, with what an off-policy
estimate needs logged beside it (`request_id`, `arm`, `propensity`).

Which experiment: `?experiment=ID` when given, else the running experiment bound to the
exhibition (indexer/experiments.py), else none: the plain ranking, still with a request_id
(arm null, propensity 1). Experiments and event counters are read through short per-process
caches (CLIK_EXPERIMENTS_CACHE_S), so a request in an experiment costs no store round trip more
than a plain one most of the time: the model arm reuses the plain path's rendered answer and
only prefixes the experiment's fields to its bytes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from api.experiment_policy import assign, thompson
from api.explained import ExplainedItem, ExplainedRanking
from api.service import ClikService
from indexer.errors import NotFound
from indexer.experiments import ARM_SEPARATOR, Arm, Experiment, ExperimentRecords


class ExperimentNotFound(NotFound):
    """?experiment= names no experiment (404)."""


class _Ttl:
    """A tiny per-process cache of store reads (key -> (value, read at)). A stale entry is
    served while one background thread reads it again, so a request never waits on the store
    for a key it has seen before (measured: with synchronous refreshes, `?unit=` paid 2-3 store
    round trips every TTL and its median was 1.4x the plain route's on a loaded box). A TTL of 0
    means no cache: every call reads."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[object, float]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str, read: Callable[[], object]) -> object:
        if self.ttl_s <= 0:
            return read()
        hit = self._items.get(key)
        if hit is None:
            value = read()
            self._put(key, value)
            return value
        if time.monotonic() - hit[1] >= self.ttl_s:
            self._refresh(key, read)
        return hit[0]

    def peek(self, key: str, read: Callable[[], object]) -> tuple[bool, object]:
        """(True, value) when the key has been read before (a stale one is read again in the
        background, as get does), (False, None) when only a store read could tell: never waits."""
        if self.ttl_s <= 0:
            return False, None
        hit = self._items.get(key)
        if hit is None:
            return False, None
        if time.monotonic() - hit[1] >= self.ttl_s:
            self._refresh(key, read)
        return True, hit[0]

    def _put(self, key: str, value: object) -> None:
        with self._lock:
            if len(self._items) > 100_000:
                self._items.clear()
            self._items[key] = (value, time.monotonic())

    def _refresh(self, key: str, read: Callable[[], object]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                self._put(key, read())
            except Exception:  # the store is down: keep serving the last value, retry next time
                pass
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=run, name="clik-experiments-refresh", daemon=True).start()


@dataclass(frozen=True)
class Served:
    ranking: ExplainedRanking | None  # None: the active version's plain answer, sent as cached bytes
    extras: dict  # request_id, experiment, arm, policy, propensity, share


class ExperimentServing:
    def __init__(self, svc: ClikService, events, ttl_s: float, control_pool: int) -> None:
        self.svc = svc
        self.records = ExperimentRecords(svc.store)
        self.events = events  # the event log (counters), or None
        self._experiments = _Ttl(ttl_s)
        self._counters = _Ttl(ttl_s)
        self.control_pool = control_pool

    def experiment(self, experiment_id: str | None, exhibition_id: str) -> Experiment | None:
        if experiment_id is None:
            bound = self._experiments.get("bind:" + exhibition_id, lambda: self.records.bound(exhibition_id))
            if bound is None:
                return None
            experiment_id = str(bound)
        found = self._experiments.get("id:" + experiment_id, lambda: self.records.get(experiment_id))
        if found is None:
            raise ExperimentNotFound(f"no experiment {experiment_id!r}")
        assert isinstance(found, Experiment)
        return found

    def plain_extras(self, exhibition_id: str, unit: str, experiment_id: str | None) -> dict | None:
        """The experiment fields of an answer that is the active version's plain answer (no
        experiment serves the exhibition, or the unit's arm is the active model), when this is
        known without a store read; None when it is not (or the unit gets something else): the
        route serves it then. For api/hot_answers.py, which must never wait on the store."""
        if experiment_id is None:
            known, bound = self._experiments.peek("bind:" + exhibition_id, lambda: self.records.bound(exhibition_id))
            if not known:
                return None
            experiment_id = None if bound is None else str(bound)
        experiment = None
        if experiment_id is not None:
            known, found = self._experiments.peek("id:" + experiment_id, lambda: self.records.get(experiment_id))
            if not known or not isinstance(found, Experiment):
                return None  # unread, or no such experiment: the route's 404
            experiment = found
        extras, arm = self._assigned(experiment, exhibition_id, unit)
        if arm is None:
            return extras
        if arm.policy == "model" and arm.model_version is None:
            return {**extras, "propensity": 1.0}
        return None

    def _assigned(self, experiment: Experiment | None, exhibition_id: str, unit: str) -> tuple[dict, Arm | None]:
        """The fields every answer with a unit carries, and the unit's arm (None: no experiment
        serves this exhibition, the plain answer with propensity 1)."""
        request_id = uuid.uuid4().hex
        if experiment is None or not experiment.serves(exhibition_id):
            return {
                "request_id": request_id,
                "experiment": None,
                "arm": None,
                "policy": None,
                "propensity": 1.0,
                "share": None,
            }, None
        arm, share = assign(experiment, unit)
        return {
            "request_id": request_id,
            "experiment": experiment.experiment_id,
            "arm": arm.label(experiment.experiment_id),
            "policy": arm.policy,
            "share": share,
        }, arm

    def forget(self) -> None:
        """After a PUT through this process: seen at once here (elsewhere within the TTL)."""
        self._experiments = _Ttl(self._experiments.ttl_s)

    def serve(self, exhibition_id: str, unit: str, experiment_id: str | None, topk: int, diverse: bool) -> Served:
        experiment = self.experiment(experiment_id, exhibition_id)
        extras, arm = self._assigned(experiment, exhibition_id, unit)
        if experiment is None or arm is None:  # the plain answer: the route sends its cached bytes, propensity 1
            return Served(None, extras)
        request_id = extras["request_id"]
        if arm.policy == "model":
            if arm.model_version is None:  # the active version: the plain answer's cached bytes
                return Served(None, {**extras, "propensity": 1.0})
            r = self.svc.rankings.page_of(exhibition_id, 0, topk, arm.model_version, diverse)
            return Served(r, {**extras, "propensity": 1.0 if r.items else None})
        rng = np.random.default_rng(int(request_id[:16], 16))  # the request id replays the choice
        if arm.policy == "control":
            ranking, chosen, propensity = self._control(exhibition_id, arm, rng, diverse)
        else:
            ranking, chosen, propensity = self._explore(experiment, exhibition_id, arm, rng, diverse)
        return Served(_first(ranking, chosen, topk), {**extras, "propensity": propensity})

    def _pool(self, exhibition_id: str, n: int, diverse: bool) -> ExplainedRanking:
        return self.svc.rankings.representative(exhibition_id, n, None, diverse)

    def _control(
        self, exhibition_id: str, arm: Arm, rng: np.random.Generator, diverse: bool
    ) -> tuple[ExplainedRanking, int | None, float | None]:
        ranking = self._pool(exhibition_id, self.control_pool, diverse)
        if not ranking.items:
            return ranking, None, None
        if arm.control == "first":
            listed = self.svc.store.get_exhibition(exhibition_id).product_ids
            position = {item.product_id: i for i, item in enumerate(ranking.items)}
            first = next((position[p] for p in listed if p in position), 0)
            return ranking, first, 1.0
        return ranking, int(rng.integers(len(ranking.items))), 1.0 / len(ranking.items)

    def _explore(
        self, experiment: Experiment, exhibition_id: str, arm: Arm, rng: np.random.Generator, diverse: bool
    ) -> tuple[ExplainedRanking, int | None, float | None]:
        ranking = self._pool(exhibition_id, arm.candidates, diverse)
        if not ranking.items:
            return ranking, None, None
        ids = [item.product_id for item in ranking.items]
        counts = self.counts(experiment, exhibition_id)
        impressions = np.array([counts.get((p, "impression"), 0) for p in ids], dtype=np.float64)
        clicks = np.array([counts.get((p, "click"), 0) for p in ids], dtype=np.float64)
        scores = np.array([item.score for item in ranking.items])
        chosen, propensity = thompson(scores, clicks, impressions, arm, rng)
        return ranking, chosen, propensity

    def counts(self, experiment: Experiment, exhibition_id: str) -> dict[tuple[str, str], int]:
        """(product, type) -> count over every arm of the experiment in this exhibition."""
        if self.events is None:
            return {}
        raw = self._counters.get(exhibition_id, lambda: self.events.counters(exhibition_id))
        assert isinstance(raw, dict)
        prefix = experiment.experiment_id + ARM_SEPARATOR
        out: dict[tuple[str, str], int] = {}
        for (_version, arm, product, kind), n in raw.items():
            if arm.startswith(prefix):
                out[(product, kind)] = out.get((product, kind), 0) + n
        return out


def _first(ranking: ExplainedRanking, chosen: int | None, topk: int) -> ExplainedRanking:
    """The chosen candidate first, then the model's order, `topk` items, ranks renumbered."""
    if chosen is None:
        return replace(ranking, items=[])
    items: list[ExplainedItem] = [ranking.items[chosen]]
    items += [item for i, item in enumerate(ranking.items) if i != chosen][: topk - 1]
    return replace(ranking, items=[replace(item, rank=r + 1) for r, item in enumerate(items)])


def prefixed(extras: dict, body: bytes) -> bytes:
    """The experiment's fields put in front of a rendered JSON object's own."""
    head = json.dumps(extras, separators=(",", ":")).encode()
    return head[:-1] + b"," + body[1:] if body[1:2] != b"}" else head
