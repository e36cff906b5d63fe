"""indexer/contracts.py is the one home of the names processes share: the worker registers
every task name it lists, and no package spells a task name or the Redis URL schemes itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from indexer.contracts import REDIS_URL_SCHEMES, TASK_NAMES, is_redis_url

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clik", "training", "indexer", "worker", "api", "clik_cli")


@pytest.mark.parametrize(
    ("url", "redis"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://cache.example:6380/1", True),
        ("unix:///run/redis.sock", True),
        ("redis+cluster://10.0.0.5:7000/0", True),
        ("rediss+cluster://cache.example:7000", True),
        (None, False),
        ("", False),
        ("file:///data/store", False),
        (".clik/store", False),
        ("amqp://guest:guest@127.0.0.1:5672//", False),
        ("REDIS://x", False),
    ],
)
def test_is_redis_url(url, redis):
    assert is_redis_url(url) is redis


def test_the_worker_registers_every_task_name():
    from worker.app import app
    import worker.tasks  # noqa: F401  (registers the tasks)

    assert set(TASK_NAMES) <= set(app.tasks)


def _shared_literals(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value in TASK_NAMES:
            found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Tuple) and tuple(getattr(e, "value", None) for e in node.elts) == REDIS_URL_SCHEMES:
            found.append(f"{node.lineno}: the Redis URL schemes")
    return found


def test_no_package_spells_the_shared_names_itself():
    spelled = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel == "indexer/contracts.py":
                continue
            if found := _shared_literals(path):
                spelled[rel] = found
    assert spelled == {}, "import them from indexer.contracts"


def test_the_literal_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        'app.send_task("clik.reindex")\nok = url.startswith(("redis://", "rediss://", "unix://", '
        '"redis+cluster://", "rediss+cluster://"))\n'
    )
    assert _shared_literals(bad) == ["1: 'clik.reindex'", "2: the Redis URL schemes"]
