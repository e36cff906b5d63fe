"""One command for a comparison: methods and query variants over several split seeds, each run
trained with the project's defaults (plus what the run asks), evaluated on held-out topic groups,
and one table with means and 95% intervals (paper Table 2 and Table 3 shapes).

Intervals: a bootstrap over the test exhibitions of all split seeds pooled (a few seeds of a few
dozen exhibitions each cannot give an interval from the seeds alone). Used by `clik experiment`.

Topic languages (`languages`, H&M reader only): each split is also written with its topics in
another language (`split<seed>/data-ko`: the same exhibitions and products, only the topic words
differ: training/data/hm_korean.py) and every run is trained and evaluated on it too, as
`<run>-ko`, so a table compares the same model on the same exhibitions in two languages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import load_config
from .evaluate import evaluate, write_json
from .trainer import train

# name -> training overrides (on top of the defaults or --config)
RUNS: dict[str, dict] = {
    "clik-group": {"method": "clik", "query": "group"},
    "clik-virtual": {"method": "clik", "query": "virtual"},
    "clik-topic": {"method": "clik", "query": "topic"},
    "triplet": {"method": "triplet"},
    "pairwise": {"method": "pairwise"},
    "pointwise": {"method": "pointwise"},
    "probe": {"method": "probe"},
    # Deeper than the projections, on a CPU: the last image stage and text layer train too.
    "clik-partial": {"method": "clik", "query": "group", "mode": "partial"},
    "clik-partial-virtual": {"method": "clik", "query": "virtual", "mode": "partial"},
    "clik-partial-topic": {"method": "clik", "query": "topic", "mode": "partial"},
    # Soft listwise Image Ranking targets instead of the best of K.
    "clik-listwise": {"method": "clik", "query": "group", "ranking_loss": "listwise"},
}
COLUMNS = ("MRR", "Top1-Top1", "Top3-Top1", "offtopic@1", "offtopic@10")
TABLE2 = ("clik-group", "probe", "triplet", "pairwise", "pointwise")
TABLE3 = ("clik-group", "clik-virtual", "clik-topic")
TABLE3_PARTIAL = ("clik-partial", "clik-partial-virtual", "clik-partial-topic")
TRAINING = ("clik-group", "clik-partial", "clik-listwise")  # locked vs deeper vs soft targets


@dataclass(frozen=True)
class ExperimentPlan:
    raw_dir: Path  # H&M raw layout
    out_dir: Path
    seeds: tuple[int, ...] = (1, 2, 3)
    runs: tuple[str, ...] = tuple(RUNS)
    test_frac: float = 0.3
    config: Path | None = None  # a YAML training config applied to every run
    overrides: tuple[str, ...] = ()  # key=value on top, for every run
    # seed -> the split's Dataset (default: the H&M reader with test_frac and that seed)
    build: Callable | None = None
    # Topic languages of the H&M reader (training/data/hm.py LANGUAGES); "en" first is the plain run.
    languages: tuple[str, ...] = ("en",)
    # Other HMOptions fields for the reader (e.g. {"min_group": 6} for a small raw sample).
    reader_options: dict | None = None
    # Training seeds (the config's `seed`) every run is trained with on every split. None: the
    # config's own seed, one run per split. Several: the table pools them, each held-out
    # exhibition's figures averaged over the training seeds before the bootstrap, so means and
    # intervals include what the training seed alone moves (on H&M it moved Top1-Top1 2x).
    train_seeds: tuple[int, ...] | None = None


def run_key(name: str, language: str) -> str:
    """A run's name in the table and its folder: `<run>` in English, `<run>-<language>` otherwise."""
    return name if language == "en" else f"{name}-{language}"


def run_dir_name(key: str, train_seed: int | None) -> str:
    """A run's folder in a split: `<key>` (the config's seed, or training seed 0, so runs of an
    experiment without training seeds are reused), `<key>-t<seed>` for the other seeds."""
    return key if not train_seed else f"{key}-t{train_seed}"


def data_dir(out_dir: Path, seed: int, language: str) -> Path:
    return out_dir / f"split{seed}" / ("data" if language == "en" else f"data-{language}")


def run_experiment(plan: ExperimentPlan, echo: Callable[[str], None] = print) -> dict:
    """Build the split datasets, train and evaluate every run (skipping finished ones: the
    command can be run again after an interruption), write summary.json and summary.md."""
    from .data.format import write_dataset
    from .data.hm import HMOptions, build_hm_dataset

    unknown = set(plan.runs) - set(RUNS)
    if unknown:
        raise ValueError(f"unknown run(s) {sorted(unknown)}; known: {list(RUNS)}")
    if plan.build is not None and plan.languages != ("en",):
        raise ValueError("topic languages come from the H&M reader; a custom build has its own topics")
    for seed in plan.seeds:
        for language in plan.languages:
            data = data_dir(plan.out_dir, seed, language)
            if (data / "exhibitions.jsonl").exists():
                continue
            if plan.build is not None:
                dataset = plan.build(seed)
            else:
                options = HMOptions(
                    **{**(plan.reader_options or {}), "test_frac": plan.test_frac, "seed": seed, "language": language}
                )
                dataset, _ = build_hm_dataset(plan.raw_dir, options)
            write_dataset(dataset, data)
    keys = [run_key(name, language) for name in plan.runs for language in plan.languages]
    for name in plan.runs:  # run by run, so the first runs' table is complete early
        for seed in plan.seeds:
            for train_seed in plan.train_seeds or (None,):
                for language in plan.languages:  # both languages together: an interrupted run leaves pairs
                    key = run_key(name, language)
                    data = data_dir(plan.out_dir, seed, language)
                    run_dir = plan.out_dir / f"split{seed}" / run_dir_name(key, train_seed)
                    result_path = run_dir / "eval.json"
                    if result_path.exists():
                        continue
                    echo(f"split {seed}: {key}" + ("" if train_seed is None else f" (training seed {train_seed})"))
                    overrides = [*plan.overrides, *([] if train_seed is None else [f"seed={train_seed}"])]
                    cfg = load_config(plan.config, overrides, **RUNS[name])
                    train(data, cfg, run_dir, progress=False)
                    write_json(evaluate(run_dir, data, bootstrap_samples=0, cache_dir=cfg.cache_dir), result_path)
    summary = summarise(plan.out_dir, keys, plan.seeds, train_seeds=plan.train_seeds)
    summary["languages"] = list(plan.languages)
    (plan.out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (plan.out_dir / "summary.md").write_text(markdown(summary))
    return summary


def _group_rows(result: dict) -> list[dict]:
    rows = []
    for g in result["per_group"]:
        on = np.array([item["on_topic"] for item in g["ranking"]])
        rows.append(
            {
                "exhibition_id": g["exhibition_id"],
                "MRR": g["rr"],
                "Top1-Top1": float(g["top1_true_rank"] <= 1),
                "Top3-Top1": float(g["top1_true_rank"] <= 3),
                "offtopic@1": float(not on[0]),
                "offtopic@10": float((~on[:10]).mean()),
            }
        )
    return rows


def _per_exhibition(results: list[dict]) -> list[dict]:
    """One row per held-out exhibition of a split: its figures averaged over the runs given
    (the same split trained with different training seeds)."""
    by_id: dict[str, list[dict]] = {}
    for r in results:
        for row in _group_rows(r):
            by_id.setdefault(row["exhibition_id"], []).append(row)
    return [{c: float(np.mean([row[c] for row in rows])) for c in COLUMNS} for rows in by_id.values()]


def summarise(out_dir: Path, runs, seeds, bootstrap: int = 1000, train_seeds=None) -> dict:
    rng = np.random.default_rng(0)
    trained = tuple(train_seeds) if train_seeds else (None,)
    summary: dict = {"seeds": list(seeds), "runs": {}}
    if train_seeds:
        summary["train_seeds"] = list(train_seeds)
    random_rows = []
    for name in runs:
        by_split = [
            [json.loads((out_dir / f"split{s}" / run_dir_name(name, t) / "eval.json").read_text()) for t in trained]
            for s in seeds
        ]
        results = [r for split in by_split for r in split]
        pooled = [row for split in by_split for row in _per_exhibition(split)]
        mean = {c: float(np.mean([r["metrics"][c] for r in results])) for c in COLUMNS}
        draws = np.array(
            [
                [np.mean([pooled[i][c] for i in pick]) for c in COLUMNS]
                for pick in (rng.integers(0, len(pooled), len(pooled)) for _ in range(bootstrap))
            ]
        )
        ci = {
            c: [float(np.percentile(draws[:, j], 2.5)), float(np.percentile(draws[:, j], 97.5))]
            for j, c in enumerate(COLUMNS)
        }
        summary["runs"][name] = {
            "mean": mean,
            "ci95": ci,
            "exhibitions": len(pooled),
            # per split seed (averaged over the training seeds), and per training seed (over the splits)
            "per_seed": [{c: float(np.mean([r["metrics"][c] for r in split])) for c in COLUMNS} for split in by_split],
            "per_train_seed": [
                {c: float(np.mean([split[i]["metrics"][c] for split in by_split])) for c in COLUMNS}
                for i in range(len(trained))
            ],
        }
        random_rows = [r["random"] for r in results]
    summary["random"] = {c: float(np.mean([r[c] for r in random_rows])) for c in COLUMNS} if random_rows else {}
    return summary


def markdown(summary: dict) -> str:
    def table(names) -> list[str]:
        rows = ["| run | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for name in names:
            if name not in summary["runs"]:
                continue
            r = summary["runs"][name]
            rows.append(
                f"| {name} | "
                + " | ".join(f"{r['mean'][c]:.3f} [{r['ci95'][c][0]:.3f}, {r['ci95'][c][1]:.3f}]" for c in COLUMNS)
                + " |"
            )
        if summary.get("random"):
            rows.append("| random | " + " | ".join(f"{summary['random'][c]:.3f}" for c in COLUMNS) + " |")
        return rows

    n = next(iter(summary["runs"].values()))["exhibitions"] if summary["runs"] else 0
    lines = [
        f"# Experiment: split seeds {summary['seeds']}",
        "",
        f"Means over the seeds; 95% intervals by bootstrap over the {n} held-out exhibitions pooled. "
        "Scores as the service scores (topic fit included).",
    ]
    if summary.get("train_seeds"):
        lines += [
            "",
            f"Every run trained with training seeds {summary['train_seeds']} on every split: means over splits and "
            "training seeds; each exhibition's figures averaged over the training seeds before the bootstrap. "
            "MRR per training seed: "
            + "; ".join(
                f"{name} " + " / ".join(f"{t['MRR']:.3f}" for t in r["per_train_seed"])
                for name, r in summary["runs"].items()
            )
            + ".",
        ]
    lines += ["", "## Methods (paper Table 2 shape)", ""] + table(TABLE2)
    lines += ["", "## Query variants (paper Table 3 shape)", ""] + table(TABLE3)
    languages = [lang for lang in summary.get("languages", ["en"]) if lang != "en"]
    if languages:
        names = [k for k in summary["runs"] if not any(k.endswith(f"-{lang}") for lang in languages)]
        lines += ["", "## Topic languages (same exhibitions, topics in " + ", ".join(["en", *languages]) + ")", ""]
        lines += table([run_key(n, lang) for n in names for lang in ["en", *languages]])
        for n in names:
            for lang in languages:
                other = summary["runs"].get(run_key(n, lang))
                if other is None:
                    continue
                ratio = other["mean"]["MRR"] / max(summary["runs"][n]["mean"]["MRR"], 1e-12)
                per_seed = ", ".join(
                    f"{o['MRR'] / max(e['MRR'], 1e-12):.3f}"
                    for e, o in zip(summary["runs"][n]["per_seed"], other["per_seed"])
                )
                lines.append(f"\n{run_key(n, lang)} / {n}: mean MRR ratio {ratio:.3f} (per seed: {per_seed})")
    if any(name in summary["runs"] for name in TABLE3_PARTIAL[1:]):
        lines += ["", "## Query variants, partially unlocked towers", ""] + table(TABLE3_PARTIAL)
    if any(name in summary["runs"] for name in TRAINING[1:]):
        lines += ["", "## What trains: locked towers, partially unlocked, listwise targets", ""] + table(TRAINING)
    return "\n".join(lines) + "\n"
