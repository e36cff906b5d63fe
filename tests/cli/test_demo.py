"""`clik demo` end to end on a small synthetic catalogue: real towers from the wheels, training,
export, the embedded store, the API over HTTP with in-process encoding, and the web page."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from clik_cli.main import app
from tests.support.api_server import free_port


@pytest.mark.slow
def test_demo_runs_the_whole_path_and_prints_representatives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLIK_STORE_URL", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--small",
            "--no-serve",
            "--epochs",
            "5",
            "--show",
            "2",
            "--workdir",
            str(tmp_path / "demo"),
            "--port",
            str(free_port()),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "SYNTHETIC" in out
    assert re.search(r"held-out topics \(\d+ exhibitions\): MRR [01]\.\d+", out)
    assert re.search(r"(\d+) products and 30 exhibitions loaded over HTTP and encoded", out)
    # two representatives printed, each with its top 3 products and a link to the web page
    lines = [line for line in out.splitlines() if "/ui#/exhibitions/" in line]
    assert len(lines) == 2
    tops = [line for line in out.splitlines() if line.strip().startswith("'") and "ms]" in line]
    assert len(tops) == 2 and all(line.count("(+") + line.count("(-") == 3 for line in tops)
    assert (tmp_path / "demo" / "models" / "demo" / "bundle.json").exists()

    # The README's retraining cycle on the store the demo left behind, from the same folder and
    # with nothing else configured: a new bundle (a stand-in for `clik train` + `clik export RUN`)
    # must re-read every image and switch, keeping the demo's version for a rollback.
    store_dir = str(tmp_path / "demo" / "store")
    export = CliRunner().invoke(
        app, ["export", "--pretrained", "clik-tiny-test", "--out", str(tmp_path / "B2"), "--store", store_dir]
    )
    assert export.exit_code == 0, export.output
    rollout = CliRunner().invoke(app, ["models", "activate", str(tmp_path / "B2"), "--store", store_dir])
    assert rollout.exit_code == 0, rollout.output
    encoded = int(re.search(r"\((\d+) images encoded, 0 skipped\)", rollout.output).group(1))
    assert encoded > 0 and "covers" in rollout.output
    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--json", "--store", store_dir]).output)
    active = [r for r in listed if r["active"]]
    assert len(listed) == 2 and active[0]["coverage"]["share"] == 1.0
