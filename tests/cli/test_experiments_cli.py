"""`clik experiments report` and `clik experiments replay` on a tiny known log, through the
commands themselves: an experiment PUT over real HTTP, events posted to the API, counted by
`clik events --days` on the real Redis (and by the embedded store's own log), then the printed
table and estimates compared with values worked out by hand below."""

from __future__ import annotations

import json
import math
import os
import uuid

import pytest
from typer.testing import CliRunner

from clik_cli.main import app
from tests.support.api_server import ApiServer, api_settings
from tests.support.bundles import store_with_linen_shirts, tiny_bundle
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

runner = CliRunner()
ARMS = {
    "exhibitions": ["e"],
    "arms": [
        {"name": "control", "share": 1, "policy": "control", "control": "random"},
        {"name": "clik", "share": 1, "policy": "model"},
        {"name": "explore", "share": 1, "policy": "explore", "candidates": 4},
    ],
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cli-exp") / "tiny", seed=0)


@pytest.fixture(autouse=True)
def _restore_environ():
    """The CLI exports a config file's settings into os.environ; tests must not leak them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _known_log(top: str, other: str) -> list[dict]:
    """20 randomised impressions (explore and control=random) and 10 of the model arm.

    explore: `top` 4 times at propensity 0.5 (1 click), `top` 2 times at 0.25 (1 click),
             `other` 4 times at 0.2 (1 click)
    control: `other` 10 times at 1/8 (1 click)
    clik:    `top` 10 times at propensity 1 (3 clicks): not randomised, left out of the replay
    A click on a product the answer did not show (same request) is no reward."""
    plan = (
        [("explore", top, 0.5, i < 1) for i in range(4)]
        + [("explore", top, 0.25, i < 1) for i in range(2)]
        + [("explore", other, 0.2, i < 1) for i in range(4)]
        + [("control", other, 0.125, i < 1) for i in range(10)]
        + [("clik", top, 1.0, i < 3) for i in range(10)]
    )
    events = []
    for i, (arm, product, propensity, clicked) in enumerate(plan):
        common = {
            "exhibition_id": "e",
            "product_id": product,
            "arm": f"known:{arm}",
            "request_id": f"r{i}",
            "position": 1,
        }
        events.append({"event_id": f"i{i}", "type": "impression", "propensity": propensity, **common})
        if clicked:
            events.append({"event_id": f"c{i}", "type": "click", **common})
    events.append(
        {
            "event_id": "stray",
            "type": "click",
            "exhibition_id": "e",
            "product_id": top,
            "arm": "known:control",
            "request_id": "r19",
        }
    )  # r19 showed `other`: this click is counted, but rewards nothing
    return events


# The report, by hand. Arms: control 10 impressions / 2 clicks (the stray click counts in the
# counters), clik 10 / 3, explore 10 / 3.
#   Wilson 95% (scipy.stats.binomtest(k, n).proportion_ci(method="wilson")):
#     2/10 -> [0.056682, 0.509838]    3/10 -> [0.107791, 0.603222]
#   lift = 0.3 / 0.2 - 1 = 0.5; Katz: exp(ln 1.5 ± 1.96 sqrt(1/3 - 1/10 + 1/2 - 1/10)) - 1
#     = [-0.6847, 6.1367]
#   P(Beta(4, 8) > Beta(3, 9)) = 0.6824 (numerical integration of the two densities)
REPORT_ROWS = {  # the printed columns: arm, policy, impressions, clicks, CTR, CTR 95%, P(>ctl), lift, lift 95%
    "control": ["control", "control", "10", "2", "20.00%", "[5.67%,", "50.98%]", "-", "-", "-"],
    "clik": ["clik", "model", "10", "3", "30.00%", "[10.78%,", "60.32%]", "P", "50.00%", "[-68.47%,", "613.67%]"],
    "explore": [
        "explore",
        "explore",
        "10",
        "3",
        "30.00%",
        "[10.78%,",
        "60.32%]",
        "P",
        "50.00%",
        "[-68.47%,",
        "613.67%]",
    ],
}
LIFT_CI = (
    math.exp(math.log(1.5) - 1.959963984540054 * math.sqrt(1 / 3 - 1 / 10 + 1 / 2 - 1 / 10)) - 1,
    math.exp(math.log(1.5) + 1.959963984540054 * math.sqrt(1 / 3 - 1 / 10 + 1 / 2 - 1 / 10)) - 1,
)

# The replay of the active version (its top product is `top`), by hand. n = 20 randomised rows;
# w = 1/p where the logged product is `top`: 2, 2, 2, 2, 4, 4, then 0 fourteen times.
#   IPS   = (2·1 + 4·1) / 20 = 0.3          SNIPS = 6 / (4·2 + 2·4) = 0.375
#   terms w·r: 2, 0, 0, 0, 4, 0 and 14 zeros: sample variance (1.7² + 3.7² + 18·0.3²) / 19
#   = 0.957895, half width 1.96·sqrt(0.957895 / 20) = 0.428935 -> [-0.1289, 0.7289]
#   matched 6, effective sample size 16² / (4·4 + 2·16) = 5.33, logged CTR 4 / 20 = 0.2
REPLAY = {
    "impressions": 20,
    "matched": 6,
    "ips": 0.3,
    "snips": 0.375,
    "effective_sample_size": 256 / 48,
    "logged_ctr": 0.2,
}
REPLAY_CI = (0.3 - 0.4289354955, 0.3 + 0.4289354955)


def _serve_and_log(server) -> tuple[str, str]:
    http = server.client()
    assert http.put("/experiments/known", json=ARMS).status_code == 200
    ranking = [i["product_id"] for i in http.get("/exhibitions/e/ranking").json()["items"]]
    top, other = ranking[0], ranking[3]
    assert http.post("/events", json={"events": _known_log(top, other)}).status_code == 202
    return top, other


def _check_report(output: str, doc: dict) -> None:
    lines = output.splitlines()
    assert lines[0] == "experiment known (control: control)"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["control"] == REPORT_ROWS["control"]
    for arm in ("clik", "explore"):
        printed = rows[arm]
        assert float(printed[7]) == pytest.approx(0.6824, abs=0.01), printed
        assert printed[:7] + printed[8:] == REPORT_ROWS[arm][:7] + REPORT_ROWS[arm][8:], printed
    arms = {a["arm"]: a for a in doc["arms"]}
    assert arms["control"]["ctr_ci95"] == pytest.approx([0.056682, 0.509838], abs=1e-6)
    assert arms["clik"]["ctr_ci95"] == pytest.approx([0.107791, 0.603222], abs=1e-6)
    assert arms["clik"]["lift"] == pytest.approx(0.5) and arms["clik"]["lift_ci95"] == pytest.approx(LIFT_CI)
    assert arms["clik"]["p_beats_control"] == pytest.approx(0.6824, abs=0.01)


def _check_replay(output: str, doc: dict, version: str) -> None:
    assert output.strip() == (
        f"candidate {version}: IPS CTR 0.3000 [-0.1289, 0.7289], SNIPS 0.3750; 6 of 20 logged "
        "impressions match, effective sample size 5; logged CTR 0.2000"
    )
    assert {k: doc[k] for k in REPLAY} == pytest.approx(REPLAY)
    assert doc["ips_ci95"] == pytest.approx(REPLAY_CI, abs=1e-9)
    assert doc["candidate"] == version and sorted(doc["arms"]) == ["control", "explore"]


@pytest.mark.redis
def test_report_and_replay_on_redis_match_the_hand_computed_log(bundle, tmp_path):
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-cliexp-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(bundle, STORE_URL, prefix)
    os.environ.update({"CLIK_STORE_URL": STORE_URL, "CLIK_STORE_PREFIX": prefix})
    days = tmp_path / "days"
    try:
        with ApiServer(create_app(api_settings(prefix, experiments_cache_s=0))) as server:
            _serve_and_log(server)
        counted = runner.invoke(app, ["events", "--days", str(days), "--idle-exit", "1"])
        assert counted.exit_code == 0, counted.output
        done = runner.invoke(app, ["experiments", "report", "known", "--json", str(tmp_path / "report.json")])
        assert done.exit_code == 0, done.output
        _check_report(done.output, json.loads((tmp_path / "report.json").read_text()))
        replayed = runner.invoke(
            app, ["experiments", "replay", "known", "--days", str(days), "--json", str(tmp_path / "replay.json")]
        )
        assert replayed.exit_code == 0, replayed.output
        _check_replay(replayed.output, json.loads((tmp_path / "replay.json").read_text()), bundle.version)
        # only the explore arm: its 10 rows, w·r = 2 + 4 -> IPS 0.6, SNIPS 6 / 16
        one = runner.invoke(app, ["experiments", "replay", "known", "--days", str(days), "--arm", "explore"])
        assert one.exit_code == 0 and "IPS CTR 0.6000" in one.output and "SNIPS 0.3750" in one.output, one.output
        # on Redis the answers are only in the day files
        refused = runner.invoke(app, ["experiments", "replay", "known"])
        assert refused.exit_code == 2 and "--days" in refused.output
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def test_report_and_replay_on_the_embedded_store_read_its_own_log(bundle, tmp_path):
    from api.app import create_app

    path = tmp_path / "store"
    store = store_with_linen_shirts(bundle, str(path), "clik:")
    with ApiServer(
        create_app(api_settings("clik:", store_url=str(path), experiments_cache_s=0), store=store)
    ) as server:
        _serve_and_log(server)
    store.close()
    os.environ["CLIK_STORE_URL"] = str(path)
    done = runner.invoke(app, ["experiments", "report", "known", "--json", str(tmp_path / "report.json")])
    assert done.exit_code == 0, done.output
    _check_report(done.output, json.loads((tmp_path / "report.json").read_text()))
    replayed = runner.invoke(app, ["experiments", "replay", "known", "--json", str(tmp_path / "replay.json")])
    assert replayed.exit_code == 0, replayed.output
    _check_replay(replayed.output, json.loads((tmp_path / "replay.json").read_text()), bundle.version)
    missing = runner.invoke(app, ["experiments", "report", "nope"])
    assert missing.exit_code == 2 and "no experiment 'nope'" in missing.output
