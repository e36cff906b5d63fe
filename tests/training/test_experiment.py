"""`clik experiment`'s engine on small synthetic splits: every run trained and evaluated per
seed, one summary with means over seeds and pooled bootstrap intervals, resumable."""

from __future__ import annotations

import json

from training.experiment import ExperimentPlan, run_experiment


def synthetic_plan(tmp_path, runs: tuple[str, ...], **fields) -> ExperimentPlan:
    """An experiment over two small synthetic splits (seeds 1, 2) with the tiny random model and
    one epoch: quick, and every run has something to evaluate."""
    from training.data.synthetic import SyntheticOptions, build_synthetic_dataset

    def build(seed: int):
        # drawn where the split's dataset is written: image paths are relative to it
        return build_synthetic_dataset(
            tmp_path / "exp" / f"split{seed}" / "data",
            SyntheticOptions(products_per_group=6, exhibitions_per_group=1, size=8, image_size=64, seed=seed),
        )

    return ExperimentPlan(
        raw_dir=tmp_path,
        out_dir=tmp_path / "exp",
        seeds=(1, 2),
        runs=runs,
        overrides=(
            "model=clik-tiny-test",
            "epochs=1",
            "tm_batch=4",
            "memory_bank_size=8",
            "calibration_folds=0",
            f"cache_dir={tmp_path / 'cache'}",
        ),
        build=build,
        **fields,
    )


def test_runs_over_seeds_are_summarised_in_both_table_shapes(tmp_path):
    plan = synthetic_plan(tmp_path, ("clik-group", "triplet"))
    seen: list[str] = []
    summary = run_experiment(plan, echo=seen.append)
    assert seen == ["split 1: clik-group", "split 2: clik-group", "split 1: triplet", "split 2: triplet"]
    for name in ("clik-group", "triplet"):
        run = summary["runs"][name]
        per_seed = [
            json.loads((tmp_path / "exp" / f"split{s}" / name / "eval.json").read_text())["metrics"]["MRR"]
            for s in (1, 2)
        ]
        assert run["mean"]["MRR"] == sum(per_seed) / 2
        low, high = run["ci95"]["MRR"]
        assert 0 <= low <= high <= 1 and run["exhibitions"] > 0
    text = (tmp_path / "exp" / "summary.md").read_text()
    assert "Table 2 shape" in text and "| clik-group |" in text and "| triplet |" in text and "| random |" in text
    seen.clear()
    run_experiment(plan, echo=seen.append)  # finished runs are not redone
    assert seen == []


def test_topic_languages_run_on_the_same_exhibitions_and_are_compared(tmp_path):
    """`--languages en,ko`: each split also written with Korean topics, every run on both, one
    table with both rows and the MRR ratio (the probe: closed form, quick)."""
    from tests.support.hm_raw import write_hm_raw
    from training.data.format import load_dataset

    raw = tmp_path / "raw"
    write_hm_raw(raw)
    plan = ExperimentPlan(
        raw_dir=raw,
        out_dir=tmp_path / "exp",
        seeds=(1,),
        runs=("probe",),
        test_frac=0.34,
        overrides=("model=clik-tiny-test", "calibration_folds=0", f"cache_dir={tmp_path / 'cache'}"),
        languages=("en", "ko"),
        reader_options={"min_group": 6, "size": 10},
    )
    seen: list[str] = []
    summary = run_experiment(plan, echo=seen.append)
    assert seen == ["split 1: probe", "split 1: probe-ko"]
    english = load_dataset(tmp_path / "exp" / "split1" / "data")
    korean = load_dataset(tmp_path / "exp" / "split1" / "data-ko")
    assert [(e.id, e.split, [p.id for p in e.products]) for e in english.exhibitions] == [
        (e.id, e.split, [p.id for p in e.products]) for e in korean.exhibitions
    ]
    assert any(e.topic["name"] == "디바이디드 베이직 바지" for e in korean.exhibitions)
    assert set(summary["runs"]) == {"probe", "probe-ko"} and summary["languages"] == ["en", "ko"]
    text = (tmp_path / "exp" / "summary.md").read_text()
    assert "## Topic languages" in text and "| probe-ko |" in text and "probe-ko / probe: mean MRR ratio" in text


def test_languages_need_the_hm_reader(tmp_path):
    import pytest

    plan = ExperimentPlan(
        raw_dir=tmp_path, out_dir=tmp_path / "exp", runs=("probe",), languages=("en", "ko"), build=lambda seed: None
    )
    with pytest.raises(ValueError, match="H&M reader"):
        run_experiment(plan)


def test_training_seeds_are_trained_per_split_and_pooled_per_exhibition(tmp_path):
    """`--train-seeds 0,1`: each run trained with both seeds on every split (seed 0 in the plain
    run's folder), the mean taken over splits and training seeds, each exhibition's figures
    averaged over the training seeds before the bootstrap (so the count stays the exhibitions')."""
    plan = synthetic_plan(tmp_path, ("clik-group",), train_seeds=(0, 1))
    seen: list[str] = []
    summary = run_experiment(plan, echo=seen.append)
    assert seen == [
        "split 1: clik-group (training seed 0)",
        "split 1: clik-group (training seed 1)",
        "split 2: clik-group (training seed 0)",
        "split 2: clik-group (training seed 1)",
    ]
    evals = {
        (s, t): json.loads((tmp_path / "exp" / f"split{s}" / folder / "eval.json").read_text())
        for s in (1, 2)
        for t, folder in ((0, "clik-group"), (1, "clik-group-t1"))
    }
    config = (tmp_path / "exp" / "split1" / "clik-group-t1" / "config.yaml").read_text()
    assert "seed: 1" in config.splitlines()
    run = summary["runs"]["clik-group"]
    mrr = {k: e["metrics"]["MRR"] for k, e in evals.items()}
    assert abs(run["mean"]["MRR"] - sum(mrr.values()) / 4) < 1e-12
    assert [round(t["MRR"], 12) for t in run["per_train_seed"]] == [
        round((mrr[1, t] + mrr[2, t]) / 2, 12) for t in (0, 1)
    ]
    assert run["exhibitions"] == sum(len(evals[s, 0]["per_group"]) for s in (1, 2))
    assert summary["train_seeds"] == [0, 1]
    assert "training seeds [0, 1]" in (tmp_path / "exp" / "summary.md").read_text()
