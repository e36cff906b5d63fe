"""Experiments: define one (arms, traffic shares, exhibitions) and read its results.

Serving happens in `GET /exhibitions/{id}/representative?unit=...` (api/experiment_serve.py);
the definitions live in the store (indexer/experiments.py); results come from the event
counters (api/experiment_stats.py). Docs: docs/experiments.md.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from api.auth import require_reader, require_writer
from api.deps import service, unprocessable
from api.experiment_stats import arm_totals, report
from api.schemas import ID_ALPHABET, ID_PATTERN, Id
from api.service import ClikService
from indexer.errors import InvalidInput
from indexer.experiments import Experiment, ExperimentConflict, ExperimentRecords, make_experiment

router = APIRouter(tags=["experiments"])
ExperimentId = Path(min_length=1, max_length=200, pattern=ID_PATTERN, description=ID_ALPHABET)


class ArmIn(BaseModel):
    name: Id = Field(max_length=100)
    share: float = Field(gt=0, le=1_000_000, description="traffic weight (shares are normalised over the arms)")
    policy: Literal["model", "control", "explore"]
    model_version: Id | None = Field(None, description="model: a registered version (default: the active one)")
    control: Literal["random", "first"] = Field(
        "random",
        description="control: a random shown product (the paper's online test) or the exhibition's first listed one",
    )
    candidates: int = Field(10, ge=2, le=100, description="explore: the model's top-n the sampler chooses among")
    prior_ctr: float = Field(0.05, gt=0, lt=1, description="explore: prior CTR of an average candidate")
    prior_strength: float = Field(20.0, gt=0, le=1e6, description="explore: the prior weighs this many impressions")
    prior_scale: float = Field(0.5, ge=0, le=10, description="explore: prior logit shift per std of CLIK's score")


class ExperimentIn(BaseModel):
    arms: list[ArmIn] = Field(min_length=1, max_length=20)
    exhibitions: list[Id] | None = Field(
        None, max_length=100_000, description="the exhibitions it serves; null: every exhibition"
    )
    control_arm: Id | None = Field(
        None, description="what the report compares against (default: the first control arm, else the first arm)"
    )
    status: Literal["running", "stopped"] = "running"
    salt: str = Field("", max_length=200, description="a new salt reassigns every unit")


def _records(svc: ClikService) -> ExperimentRecords:
    return ExperimentRecords(svc.store)


@router.put(
    "/experiments/{experiment_id}",
    dependencies=[Depends(require_writer)],
    responses={
        401: {},
        403: {},
        409: {"description": "another running experiment serves one of its exhibitions"},
        503: {},
    },
)
def put_experiment(
    body: ExperimentIn, request: Request, experiment_id: str = ExperimentId, svc: ClikService = Depends(service)
) -> dict:
    """Create or replace an experiment. A running one serves its exhibitions at once in this
    API process, in others within CLIK_EXPERIMENTS_CACHE_S."""
    try:
        experiment = make_experiment(
            experiment_id,
            [a.model_dump() for a in body.arms],
            body.exhibitions,
            body.control_arm,
            body.status,
            body.salt,
        )
        for arm in experiment.arms:
            if arm.model_version is not None:
                svc.store.get_version(arm.model_version)  # VersionNotFound -> 422 now, not at serve time
        stored = _records(svc).put(experiment)
    except ExperimentConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except InvalidInput as exc:
        raise unprocessable(["body"], str(exc)) from None
    request.app.state.experiments.forget()
    return stored.to_json()


@router.get("/experiments", dependencies=[Depends(require_reader)], responses={503: {}})
def list_experiments(svc: ClikService = Depends(service)) -> dict:
    records = _records(svc)
    found = [records.get(i) for i in records.ids()]
    return {"items": [e.to_json() for e in found if e is not None]}


def experiment_report(experiment: Experiment, events) -> dict:
    """The definition and the results of an experiment (the CLI's report too)."""
    exhibitions = (
        list(experiment.exhibitions)
        if experiment.exhibitions is not None
        else (events.exhibitions() if events is not None else [])
    )
    counters = (events.counters(e) for e in exhibitions) if events is not None else iter(())
    return {
        **report(experiment, arm_totals(experiment, counters)),
        "definition": experiment.to_json(),
        "exhibitions_counted": len(exhibitions),
    }


@router.get("/experiments/{experiment_id}", dependencies=[Depends(require_reader)], responses={404: {}, 503: {}})
def get_experiment(request: Request, experiment_id: str = ExperimentId, svc: ClikService = Depends(service)) -> dict:
    """Impressions, clicks and CTR per arm with 95% intervals, P(arm beats control), lift over
    control with its 95% interval (docs/experiments.md says how each is computed). Counts are
    those `clik events` has counted (Redis) or the embedded log has (at once)."""
    experiment = _records(svc).get(experiment_id)
    if experiment is None:
        raise HTTPException(404, f"no experiment {experiment_id!r}")
    return experiment_report(experiment, request.app.state.events)
