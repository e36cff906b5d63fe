"""Online experiments: their records and which exhibition each one serves, kept with the store.

An experiment splits the visitors (``unit``) of some exhibitions between arms; each arm is a
policy (docs/experiments.md):

    model     the ranking of a model version (None: the active one) — "CLIK"
    control   the paper's online baseline: a random product of the exhibition ("random"), or
              its first listed product ("first")
    explore   Thompson sampling over the model's top candidates, with a Beta prior from CLIK's
              score, updated from the event counters (a new exhibition starts from the model
              and learns from clicks)

Records are small JSON documents in the store's record space (``put_job`` / ``get_job``, so the
Redis and the embedded backends both keep them and every process reads the same ones):

    experiment:<id>              the experiment (what PUT /experiments/{id} wrote)
    experiment:bind:<exhibition> {"experiment": id} while a running experiment serves it
    experiment:bind:*            the running experiment that serves every exhibition, if any
    experiments:index            {"ids": [...]} every experiment ever written

One running experiment per exhibition: a unit's arm must not depend on which of two experiments
a request happened to find. The check and the write are one step of the store (update_jobs),
so two PUTs racing for an exhibition cannot both win. Nothing here imports the API or torch.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from indexer.errors import InvalidInput
from indexer.store import VectorStore

POLICIES = ("model", "control", "explore")
CONTROL_MODES = ("random", "first")
ALL_EXHIBITIONS = "*"
ARM_SEPARATOR = ":"  # events carry arm "<experiment>:<arm>" (the API's id alphabet allows ":")


INDEX_RECORD = "experiments:index"


class ExperimentConflict(Exception):
    """Another running experiment already serves one of these exhibitions."""


class _Replaced(Exception):
    """The experiment's own record changed between reading it and the write: start again."""


@dataclass(frozen=True)
class Arm:
    name: str
    share: float  # of the experiment's traffic (normalised over the arms)
    policy: str
    model_version: str | None = None  # model: None = the active version
    control: str = "random"  # control: random | first
    candidates: int = 10  # explore: the model's top-n the sampler chooses among
    prior_ctr: float = 0.05  # explore: the CTR the prior expects of an average candidate
    prior_strength: float = 20.0  # explore: the prior weighs as much as this many impressions
    prior_scale: float = 0.5  # explore: logit shift per standard deviation of CLIK's score

    def label(self, experiment_id: str) -> str:
        """The `arm` events of this arm carry (counters are kept per label)."""
        return f"{experiment_id}{ARM_SEPARATOR}{self.name}"


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    arms: tuple[Arm, ...]
    exhibitions: tuple[str, ...] | None  # None: every exhibition
    control_arm: str  # the arm the report compares against
    status: str = "running"  # running | stopped (a stopped one serves nobody; its report stays)
    salt: str = ""  # changes every unit's bucket (a new experiment on the same units)
    created_at: float = 0.0
    updated_at: float = 0.0
    cumulative: tuple[float, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        total = sum(a.share for a in self.arms)
        edges, acc = [], 0.0
        for a in self.arms:
            acc += a.share / total
            edges.append(acc)
        edges[-1] = 1.0
        object.__setattr__(self, "cumulative", tuple(edges))

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def serves(self, exhibition_id: str) -> bool:
        return self.status == "running" and (self.exhibitions is None or exhibition_id in self.exhibitions)

    def to_json(self) -> dict:
        return {
            "experiment_id": self.experiment_id,
            "arms": [asdict(a) for a in self.arms],
            "exhibitions": None if self.exhibitions is None else list(self.exhibitions),
            "control_arm": self.control_arm,
            "status": self.status,
            "salt": self.salt,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, doc: Mapping) -> "Experiment":
        arms = tuple(Arm(**a) for a in doc["arms"])
        exhibitions = doc.get("exhibitions")
        return cls(
            doc["experiment_id"],
            arms,
            None if exhibitions is None else tuple(exhibitions),
            doc["control_arm"],
            doc.get("status", "running"),
            doc.get("salt", ""),
            float(doc.get("created_at", 0.0)),
            float(doc.get("updated_at", 0.0)),
        )


def make_experiment(
    experiment_id: str,
    arms: Sequence[Mapping],
    exhibitions: Sequence[str] | None,
    control_arm: str | None = None,
    status: str = "running",
    salt: str = "",
) -> Experiment:
    """Validate a definition (InvalidInput names the problem)."""
    if not arms:
        raise InvalidInput("an experiment needs at least one arm")
    built, names = [], set()
    for i, raw in enumerate(arms):
        arm = Arm(**raw)
        if arm.name in names:
            raise InvalidInput(f"arms[{i}]: arm name {arm.name!r} is used twice")
        names.add(arm.name)
        if arm.policy not in POLICIES:
            raise InvalidInput(f"arms[{i}]: policy must be one of {', '.join(POLICIES)}")
        if arm.control not in CONTROL_MODES:
            raise InvalidInput(f"arms[{i}]: control must be one of {', '.join(CONTROL_MODES)}")
        if not (math.isfinite(arm.share) and arm.share > 0):
            raise InvalidInput(f"arms[{i}]: share must be > 0")
        if not 0 < arm.prior_ctr < 1:
            raise InvalidInput(f"arms[{i}]: prior_ctr must be in (0, 1)")
        built.append(arm)
    if control_arm is None:
        controls = [a.name for a in built if a.policy == "control"]
        control_arm = controls[0] if controls else built[0].name
    if control_arm not in names:
        raise InvalidInput(f"control_arm {control_arm!r} is not one of the arms")
    if status not in ("running", "stopped"):
        raise InvalidInput("status must be running or stopped")
    if exhibitions is not None and not exhibitions:
        raise InvalidInput("exhibitions: list at least one, or leave it out (null) for every exhibition")
    return Experiment(
        experiment_id,
        tuple(built),
        None if exhibitions is None else tuple(dict.fromkeys(exhibitions)),
        control_arm,
        status,
        salt,
    )


def _bind_key(exhibition_id: str) -> str:
    return f"experiment:bind:{exhibition_id}"


class ExperimentRecords:
    """Experiments and their exhibition bindings in a store (either backend)."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def get(self, experiment_id: str) -> Experiment | None:
        doc = self.store.get_job(f"experiment:{experiment_id}")
        return Experiment.from_json(doc) if doc else None

    def ids(self) -> list[str]:
        return list((self.store.get_job(INDEX_RECORD) or {}).get("ids", []))

    def bound(self, exhibition_id: str) -> str | None:
        """The running experiment serving this exhibition (its own binding first, then the one
        serving every exhibition)."""
        for key in (_bind_key(exhibition_id), _bind_key(ALL_EXHIBITIONS)):
            found = (self.store.get_job(key) or {}).get("experiment")
            if found:
                return str(found)
        return None

    def put(self, experiment: Experiment) -> Experiment:
        """Write it and move its bindings, checked and written as one step of the store
        (update_jobs): of two PUTs racing for an exhibition exactly one wins. Raises
        ExperimentConflict when a running experiment already serves one of its exhibitions
        (nothing is written then)."""
        record = f"experiment:{experiment.experiment_id}"
        while True:
            # which bindings the old definition holds decides which records to read; if another
            # PUT of this experiment replaces it meanwhile, read again
            old_doc = self.store.get_job(record)
            old = Experiment.from_json(old_doc) if old_doc else None
            now = time.time()
            stored = Experiment(
                **{**experiment.__dict__, "created_at": old.created_at if old else now, "updated_at": now}
            )
            wanted = self._keys(stored) if stored.status == "running" else set()
            released = (self._keys(old) if old else set()) - wanted
            try:
                self.store.update_jobs(
                    [record, INDEX_RECORD, *sorted(wanted | released)],
                    functools.partial(
                        self._writes, experiment=stored, old_doc=old_doc, wanted=wanted, released=released
                    ),
                )
            except _Replaced:
                continue
            return stored

    @staticmethod
    def _writes(
        current: Mapping[str, dict | None],
        experiment: Experiment,
        old_doc: dict | None,
        wanted: set[str],
        released: set[str],
    ) -> dict[str, dict]:
        """The records a PUT replaces, given what the store holds now."""
        experiment_id = experiment.experiment_id
        if current[f"experiment:{experiment_id}"] != old_doc:
            raise _Replaced
        for key in sorted(wanted):
            holder = (current[key] or {}).get("experiment")
            if holder and holder != experiment_id:
                where = key.removeprefix("experiment:bind:")
                raise ExperimentConflict(
                    f"experiment {holder!r} already serves "
                    f"{'every exhibition' if where == ALL_EXHIBITIONS else repr(where)}"
                )
        writes: dict[str, dict] = {f"experiment:{experiment_id}": experiment.to_json()}
        for key in released:
            if (current[key] or {}).get("experiment") == experiment_id:
                writes[key] = {}  # records are replaced, never deleted: empty = unbound
        for key in wanted:
            writes[key] = {"experiment": experiment_id}
        ids = list((current[INDEX_RECORD] or {}).get("ids", []))
        if experiment_id not in ids:
            writes[INDEX_RECORD] = {"ids": ids + [experiment_id]}
        return writes

    @staticmethod
    def _keys(experiment: Experiment) -> set[str]:
        if experiment.exhibitions is None:
            return {_bind_key(ALL_EXHIBITIONS)}
        return {_bind_key(e) for e in experiment.exhibitions}
