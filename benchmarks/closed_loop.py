"""The closed loop in simulation: serve, log, learn, retrain, over the live API.

    python benchmarks/closed_loop.py [--quick] [--json PATH]

1. A SYNTHETIC catalogue (`clik demo`'s builder: drawn silhouettes, topic groups such as "Red
   bags"). Each product of an exhibition gets a hidden click probability that visitors follow:
   on-topic products from 1% to 25% by their rank in the catalogue's made-up sales (the photo's
   composition), off-topic ones 0.5%.
2. The model that serves: locked-tower CLIK trained on the sales of only a few exhibitions (the
   first model of a new shop), exported, activated on a Redis store, images encoded.
3. The API as deployed (uvicorn subprocess, 2 workers, real HTTP) and `clik events --days`
   (subprocess) counting events and writing day files. One experiment over every exhibition:
   `clik` (the model) 40%, `control` (a random product, the paper's online test) 30%,
   `explore` (Thompson sampling with CLIK's prior) 30%. Visitors arrive in rounds; each asks
   `representative?unit=`, clicks with the hidden probability of what it was shown, and the
   impressions and clicks are posted to /events with request_id, arm and propensity. One held-out
   exhibition (a topic the model never saw) gets a quarter of the traffic: the "new exhibition".
4. Read out: CTR per arm and the lift of `clik` over control with its 95% interval
   (GET /experiments/loop); the explore arm's regret and how often it shows the best product of
   the new exhibition, per round; an IPS / SNIPS replay of the model's top product from the
   randomised arms' logs, against its observed CTR; `representative?unit=` latency next to the
   plain route's, side by side; events/s through POST /events, with the consumer SIGKILLed
   mid-burst and a second one finishing (lost / double-counted events checked on the counters).
5. One retrain: `clik data events --with-labels` turns the day files into CTR labels beside the
   first model's sales, the served model is fine-tuned on them (the retraining cycle; the
   held-out topics left out), a model
   from fresh projections too for comparison, and each model's MRR is measured on the held-out
   exhibitions against the hidden click probabilities. benchmarks/retrain_variants.py compares
   more ways to retrain on one run's logs, over several seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import support  # noqa: E402
from benchmarks.support import delete_prefix  # noqa: E402

KEY = "bench-key"


def hidden_ctr(dataset) -> dict[tuple[str, str], float]:
    out = {}
    for ex in dataset.exhibitions:
        on = [p for p in ex.products if p.on_topic]
        order = sorted(on, key=lambda p: p.criteria["sales"])
        for i, p in enumerate(order):
            q = i / max(len(order) - 1, 1)
            out[(ex.id, p.id)] = 0.01 + 0.24 * q**4
        for p in ex.products:
            out.setdefault((ex.id, p.id), 0.005)
    return out


def train(data_dir: Path, run_dir: Path, cache: Path, epochs: float, **overrides) -> Path:
    """Locked-tower CLIK as the first model is trained; `overrides`: TrainConfig fields (seed,
    init_from, lr) the retraining variants change."""
    from training.config import TrainConfig
    from training.trainer import train as run

    cfg = TrainConfig(
        **{
            **dict(
                model="clik-minilm-lite0",
                method="clik",
                query="group",
                mode="locked",
                tm_batch=512,
                memory_bank_size=512,
                groups_per_batch=12,
                images_per_group=20,
                epochs=epochs,
                lr=1e-3,
                cache_dir=str(cache),
            ),
            **overrides,
        }
    )
    run(data_dir, cfg, run_dir)
    return run_dir


def mrr(run_dir: Path, data_dir: Path, cache: Path) -> float:
    from training.evaluate import evaluate

    return float(
        evaluate(run_dir, data_dir, bootstrap_samples=0, cache_dir=str(cache), criterion="ctr")["metrics"]["MRR"]
    )


def subset(dataset, keep, criterion: str | None = None, labels=None):
    """A copy of the dataset with only `keep` exhibitions (labels: {(ex, product): value})."""
    from training.data.format import Dataset, Exhibition, Product

    exhibitions = []
    for ex in dataset.exhibitions:
        if not keep(ex):
            continue
        products = [
            Product(
                p.id,
                ex.resolve_image(p, dataset.data_dir),
                {criterion: labels[(ex.id, p.id)]} if labels else dict(p.criteria),
                p.on_topic,
            )
            for p in ex.products
        ]
        exhibitions.append(Exhibition(ex.id, ex.group, ex.split, dict(ex.topic), products))
    if criterion is None:  # the same labels: every declared criterion stays
        return Dataset(
            dataset.name,
            list(dataset.criteria),
            dataset.default_criterion,
            dataset.source,
            exhibitions,
            dict(dataset.meta),
        )
    return Dataset(dataset.name, [criterion], criterion, dataset.source, exhibitions, dict(dataset.meta))


def counted(r: redis.Redis, prefix: str) -> int:
    raw = r.hgetall(prefix + "ev:stats")
    return int(raw.get(b"counted", 0)) + int(raw.get(b"duplicates", 0))


def wait_counted(r: redis.Redis, prefix: str, target: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while counted(r, prefix) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the consumer counted {counted(r, prefix)} of {target} events")
        time.sleep(0.05)


def latency_side_by_side(http: httpx.Client, exhibition: str, unit: str, n: int) -> dict:
    """p50/p90 of plain representative and of ?unit= (a unit in the model arm), interleaved."""
    plain, with_unit = [], []
    for _ in range(20):
        http.get(f"/exhibitions/{exhibition}/representative").raise_for_status()
        http.get(f"/exhibitions/{exhibition}/representative", params={"unit": unit}).raise_for_status()
    for _ in range(n):
        t = time.perf_counter()
        http.get(f"/exhibitions/{exhibition}/representative").raise_for_status()
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        http.get(f"/exhibitions/{exhibition}/representative", params={"unit": unit}).raise_for_status()
        with_unit.append(time.perf_counter() - t)
    p = {k: [float(np.percentile(v, q)) * 1000 for q in (50, 90)] for k, v in (("plain", plain), ("unit", with_unit))}
    return {
        "plain_p50_ms": p["plain"][0],
        "plain_p90_ms": p["plain"][1],
        "unit_p50_ms": p["unit"][0],
        "unit_p90_ms": p["unit"][1],
        "unit_over_plain_p50": p["unit"][0] / p["plain"][0],
        "requests": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small catalogue, fewer rounds and epochs")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--visitors", type=int, help="per round")
    ap.add_argument("--burst", type=int, help="events posted in the throughput phase")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep the workdir's first model and the store's encoded "
        "vectors between runs (events and experiments are cleared at the start)",
    )
    args = ap.parse_args()
    rounds = args.rounds or (6 if args.quick else 16)
    visitors = args.visitors or (600 if args.quick else 1500)
    burst = args.burst or (30_000 if args.quick else 100_000)
    epochs_seed, epochs_retrain = (6.0, 12.0) if args.quick else (8.0, 20.0)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="clik-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    out: dict = {"quick": args.quick, "rounds": rounds, "visitors_per_round": visitors, "workdir": str(work)}
    started = time.monotonic()

    # 1-2. catalogue, hidden click probabilities, the first model
    from training.data.format import load_dataset, write_dataset
    from training.data.synthetic import SyntheticOptions, build_synthetic_dataset

    options = (
        SyntheticOptions(products_per_group=8, exhibitions_per_group=1, size=10)
        if args.quick
        else SyntheticOptions(products_per_group=12, exhibitions_per_group=2, size=10)
    )
    data_dir = work / "data"
    dataset = build_synthetic_dataset(data_dir, options)
    write_dataset(dataset, data_dir)
    dataset = load_dataset(data_dir)
    ctr = hidden_ctr(dataset)
    train_ids = [ex.id for ex in dataset.split("train")]
    test_ids = {ex.id for ex in dataset.split("test")}
    seed_ids = set(train_ids[::3])  # the few exhibitions the first model saw (a third)
    seed_dir, eval_dir, cache = work / "seed-data", work / "eval-data", work / "features"
    write_dataset(subset(dataset, lambda ex: ex.id in seed_ids), seed_dir)
    write_dataset(subset(dataset, lambda ex: ex.id in test_ids, "ctr", ctr), eval_dir)
    print(
        f"catalogue: {len(dataset.exhibitions)} exhibitions ({len(test_ids)} held-out), first model trained on "
        f"{len(seed_ids)}",
        flush=True,
    )
    served_run = work / "run-served"
    if not (args.reuse and (served_run / "checkpoint").exists()):
        train(seed_dir, served_run, cache, epochs_seed)
    out["mrr_served"] = mrr(served_run, eval_dir, cache)

    from clik_cli.demo_steps import export_model
    from clik_cli.single_machine import fetch_limits
    from indexer.config import open_store
    from indexer.store_settings import remember_file_roots
    from worker.encode import EncoderCache, encode_products

    info = export_model(served_run, work / "served")
    prefix = f"clik-bench-loop-{info.version[:8]}:" if args.reuse else f"clik-bench-loop-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(args.redis)
    store = open_store(args.redis, prefix=prefix)
    procs: list[subprocess.Popen] = []
    try:
        products = sorted({p.id for ex in dataset.exhibitions for p in ex.products})
        active = store.active_version()
        if (
            args.reuse
            and active is not None
            and active.name == info.version
            and store.coverage([info.version]).covered[info.version] == len(products)
        ):
            for pattern in ("ev:*", "job:experiment*"):
                delete_prefix(r, prefix + pattern.removesuffix("*"))
        else:
            remember_file_roots(store, [data_dir.resolve()])
            store.register_version(info.version, info.embed_dim, bundle_uri=str(info.path.resolve()))
            store.activate(info.version)
            for ex in dataset.exhibitions:
                for p in ex.products:
                    store.put_product(p.id, str(Path(ex.resolve_image(p, data_dir)).resolve()))
            encode_products(store, products, EncoderCache("cpu", 32, 1), fetch_limits(store, [data_dir.resolve()]))
        for ex in dataset.exhibitions:
            store.put_exhibition(ex.id, {k: v for k, v in ex.topic.items() if v}, [p.id for p in ex.products])
        print(
            f"served model {info.version[:12]} active, {len(products)} images encoded "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )

        # 3. the API and the consumer
        port = 18500 + os.getpid() % 400
        url = f"http://127.0.0.1:{port}"
        days = work / "days"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CLIK_STORE_URL": args.redis,
            "CLIK_STORE_PREFIX": prefix,
            "CLIK_API_KEYS": json.dumps([KEY]),
            "CLIK_DEVICE": "cpu",
            "CLIK_EXPERIMENTS_CACHE_S": "0.5",
            "CLIK_EVENTS_CLAIM_IDLE_MS": "500",
            "CLIK_READY_MIN_COVERAGE": "0.5",
            "HF_HUB_OFFLINE": "1",
        }
        api = support.start_api(env, port, args.workers)
        procs.append(api)
        consumer_cmd = [sys.executable, "-m", "clik_cli.main", "events", "--days", str(days), "--batch", "500"]
        consumer = subprocess.Popen(
            consumer_cmd + ["--consumer", "a"], cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        procs.append(consumer)
        support.wait_ready(url, api, timeout=900)
        http = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60)
        all_ids = [ex.id for ex in dataset.exhibitions]
        new_exhibition = sorted(test_ids)[0]
        http.put(
            "/experiments/loop",
            json={
                "arms": [
                    {"name": "clik", "share": 0.4, "policy": "model"},
                    {"name": "control", "share": 0.3, "policy": "control", "control": "random"},
                    {"name": "explore", "share": 0.3, "policy": "explore", "candidates": options.size},
                ]
            },
        ).raise_for_status()
        clik_unit = next(
            f"lat-{i}"
            for i in range(1000)
            if http.get(f"/exhibitions/{new_exhibition}/representative", params={"unit": f"lat-{i}"}).json()["arm"]
            == "loop:clik"
        )
        out["latency"] = latency_side_by_side(http, new_exhibition, clik_unit, 150 if args.quick else 500)
        print(
            f"latency p50: plain {out['latency']['plain_p50_ms']:.2f} ms, ?unit= {out['latency']['unit_p50_ms']:.2f}"
            f" ms (x{out['latency']['unit_over_plain_p50']:.3f})",
            flush=True,
        )

        # rounds of visitors
        best_new = max(
            (p.id for p in next(e for e in dataset.exhibitions if e.id == new_exhibition).products),
            key=lambda pid: ctr[(new_exhibition, pid)],
        )
        posted, per_round = 0, []
        regret = {"loop:clik": 0.0, "loop:control": 0.0, "loop:explore": 0.0}
        pulls = {k: 0 for k in regret}

        def visit(args_):
            unit, exhibition = args_
            with httpx.Client(base_url=url, timeout=60) as c:
                return (
                    unit,
                    exhibition,
                    c.get(f"/exhibitions/{exhibition}/representative", params={"unit": unit}).json(),
                )

        pool = ThreadPoolExecutor(4)
        for round_ in range(rounds):
            plan = [
                (f"v{round_}-{i}", new_exhibition if rng.random() < 0.25 else all_ids[int(rng.integers(len(all_ids)))])
                for i in range(visitors)
            ]
            events, explore_new, best_hits = [], 0, 0
            for unit, exhibition, body in pool.map(visit, plan):
                if not body.get("items"):
                    continue
                product, rid = body["items"][0]["product_id"], body["request_id"]
                common = {
                    "exhibition_id": exhibition,
                    "product_id": product,
                    "arm": body["arm"],
                    "request_id": rid,
                    "unit": unit,
                    "model_version": body["model_version"],
                    "position": 1,
                }
                events.append(
                    {"event_id": rid + "-i", "type": "impression", "propensity": body["propensity"], **common}
                )
                p = ctr[(exhibition, product)]
                if rng.random() < p:
                    events.append({"event_id": rid + "-c", "type": "click", **common})
                if exhibition == new_exhibition:
                    regret[body["arm"]] += ctr[(exhibition, best_new)] - p
                    pulls[body["arm"]] += 1
                    if body["arm"] == "loop:explore":
                        explore_new += 1
                        best_hits += product == best_new
            for i in range(0, len(events), 1000):
                http.post("/events", json={"events": events[i : i + 1000]}).raise_for_status()
            posted += len(events)
            wait_counted(r, prefix, posted)
            time.sleep(0.6)  # the API processes' counter caches (CLIK_EXPERIMENTS_CACHE_S) expire
            per_round.append(
                {
                    "round": round_ + 1,
                    "explore_on_new": explore_new,
                    "explore_best_share": best_hits / explore_new if explore_new else None,
                    "explore_regret_cum": regret["loop:explore"],
                }
            )
            print(
                f"round {round_ + 1}: {len(events)} events; explore showed the new exhibition's best product "
                f"{best_hits}/{explore_new}",
                flush=True,
            )
        report = http.get("/experiments/loop").json()
        print(json.dumps(report["arms"]), flush=True)
        arms = {a["arm"]: a for a in report["arms"]}
        out["ctr"] = {name: a["ctr"] for name, a in arms.items()}
        out["ctr_ci95"] = {name: a["ctr_ci95"] for name, a in arms.items()}
        out["impressions"] = {name: a["impressions"] for name, a in arms.items()}
        out["lift"] = arms["clik"]["lift"]
        out["lift_ci95"] = arms["clik"]["lift_ci95"]
        out["p_clik_beats_control"] = arms["clik"]["p_beats_control"]
        out["explore_lift_ci95"] = arms["explore"]["lift_ci95"]
        out["new_exhibition"] = {
            "id": new_exhibition,
            "best": best_new,
            "rounds": per_round,
            "regret_per_pull": {k: regret[k] / pulls[k] if pulls[k] else None for k in regret},
            "final_best_share": per_round[-1]["explore_best_share"],
        }

        # replay of the model's top product from the randomised arms' logs
        from api.experiment_replay import estimate, logged_answers
        from indexer.day_files import read_days

        top1 = {e: http.get(f"/exhibitions/{e}/representative").json()["items"][0]["product_id"] for e in all_ids}
        rows = logged_answers(read_days(days), {"loop:explore", "loop:control"})
        out["replay"] = {**estimate(rows, top1.get), "observed_clik_ctr": out["ctr"]["clik"]}

        # events/s, with the consumer killed mid-burst
        bench_events = [
            {
                "event_id": f"b-{i}",
                "type": "impression" if i % 10 else "click",
                "exhibition_id": "bench",
                "product_id": f"p{i % 50}",
                "arm": "bench:a",
                "unit": f"u{i % 997}",
            }
            for i in range(burst)
        ]
        bodies = [json.dumps({"events": bench_events[i : i + 1000]}).encode() for i in range(0, burst, 1000)]
        bodies.append(json.dumps({"events": bench_events[:1000]}).encode())  # a client's retry: counted once
        before = counted(r, prefix)
        lock, queue = threading.Lock(), list(bodies)

        def poster():
            with httpx.Client(
                base_url=url, headers={"X-API-Key": KEY, "content-type": "application/json"}, timeout=60
            ) as c:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    c.post("/events", content=body).raise_for_status()

        t = time.perf_counter()
        threads = [threading.Thread(target=poster) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out["events_per_s"] = (burst + 1000) / (time.perf_counter() - t)
        while counted(r, prefix) - before < burst // 3:
            time.sleep(0.01)
        os.killpg(consumer.pid, signal.SIGKILL)  # mid-burst: its last batch is pending, maybe half written
        consumer.wait()
        second = subprocess.Popen(
            consumer_cmd + ["--consumer", "b"], cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        procs.append(second)
        wait_counted(r, prefix, before + burst + 1000, timeout=300)
        got = {k.decode(): int(v) for k, v in r.hgetall(prefix + "ev:c:bench").items()}
        total = sum(got.values())
        expected: dict[str, int] = {}
        for e in bench_events:
            key = f"|bench:a|{e['product_id']}|{e['type']}"
            expected[key] = expected.get(key, 0) + 1
        out["lost_events"] = sum(max(n - got.get(k, 0), 0) for k, n in expected.items())
        out["double_counted"] = sum(max(n - expected.get(k, 0), 0) for k, n in got.items())
        out["bench_events_counted"] = total
        out["consumer_killed_after"] = "a third of the burst counted"
        print(
            f"events: {out['events_per_s']:.0f}/s accepted; after a consumer SIGKILL: {out['lost_events']} lost, "
            f"{out['double_counted']} double-counted",
            flush=True,
        )
        http.close()
        pool.shutdown()

        # 5. one retrain on the logged events
        ctr_dir = work / "ctr-data"
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "clik_cli.main",
                "data",
                "events",
                str(ctr_dir),
                "--days",
                str(days),
                "--min-impressions",
                "3",
                "--smoothing",
                "10",
                "--test-frac",
                "0",
                "--with-labels",
                str(seed_dir),
            ],
            cwd=ROOT,
            env={**env, "CLIK_STORE_URL": args.redis},
            capture_output=True,
            text=True,
        )
        if cli.returncode != 0:
            raise RuntimeError(cli.stderr)
        print(cli.stdout.strip(), flush=True)
        logged = load_dataset(ctr_dir)
        train_dir = work / "ctr-train"
        kept = subset(logged, lambda ex: ex.id not in test_ids and ex.id != "bench")
        out["retrain_exhibitions"] = len(kept.exhibitions)
        write_dataset(kept, train_dir)
        # the retraining cycle (docs/experiments.md): the served model fine-tuned on the CTR
        # labels beside the sales it learnt from; from fresh projections too, for comparison
        retrained = train(
            train_dir, work / "run-retrained", cache, epochs_retrain, init_from=str(served_run), seed=args.seed
        )
        out["mrr_retrained"] = mrr(retrained, eval_dir, cache)
        scratch = train(train_dir, work / "run-retrained-scratch", cache, epochs_retrain, seed=args.seed)
        out["mrr_retrained_scratch"] = mrr(scratch, eval_dir, cache)
        out["mrr_random"] = float(np.mean([_random_mrr(ex, ctr) for ex in dataset.exhibitions if ex.id in test_ids]))
        print(
            f"held-out MRR (hidden CTR): served {out['mrr_served']:.3f}, retrained on logged events "
            f"(warm start) {out['mrr_retrained']:.3f}, from scratch {out['mrr_retrained_scratch']:.3f}, random "
            f"{out['mrr_random']:.3f}",
            flush=True,
        )
    finally:
        for p in procs:
            support.stop(p, grace_s=15)
        store.close()
        if not args.reuse:
            delete_prefix(r, prefix)
    out["elapsed_s"] = time.monotonic() - started
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "events_per_s",
                    "ctr",
                    "lift_ci95",
                    "lost_events",
                    "double_counted",
                    "mrr_served",
                    "mrr_retrained",
                )
            },
            indent=1,
        )
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


def _random_mrr(ex, ctr) -> float:
    """Expected MRR of a random order: the mean of 1/rank over the positions."""
    n = len(ex.products)
    return sum(1 / k for k in range(1, n + 1)) / n if n else math.nan


if __name__ == "__main__":
    main()
