"""The import rules of docs/architecture.md's package table, checked on the source with `ast`.

Imports inside functions count too: a lazy import still makes the package need the other one
(an API process that imported worker/ would load Celery tasks and torch image towers). Nothing
is imported here, so the check needs neither torch nor Redis and takes milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import (docs/architecture.md, "Packages").
FORBIDDEN: dict[str, frozenset[str]] = {
    "clik": frozenset({"training", "indexer", "worker", "api", "clik_cli"}),
    "training": frozenset({"indexer", "worker", "api", "clik_cli"}),
    "indexer": frozenset(
        {"torch", "torchvision", "transformers", "timm", "clik", "training", "worker", "api", "clik_cli"}
    ),
    "service_config": frozenset({"training", "worker", "api", "clik_cli", "torch"}),
    "worker": frozenset({"api", "training", "clik_cli"}),
    "api": frozenset({"worker", "training", "clik_cli"}),
}


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the module `module` (dotted,
    e.g. "api.routes.rank"; relative imports are resolved against it)."""
    found: list[tuple[int, str]] = []
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y: relative to the module's package
                base = package[: len(package) - node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return sorted(found)


def violations(package: str, root: Path = ROOT) -> list[str]:
    forbidden = FORBIDDEN[package]
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] + ["__init__"]  # relative imports resolve against the package itself
        module = ".".join(parts)
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module):
            if name.split(".")[0] in forbidden:
                bad.append(f"{rel}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_table(package):
    assert violations(package) == [], f"{package}/ breaks docs/architecture.md's import rules"


def test_every_package_is_checked():
    """A new top-level package must get its row in the table (and here)."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks", "scripts"}
    assert packages - set(FORBIDDEN) <= {"clik_cli"}  # the CLI may import everything


def test_checker_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself catches what it is meant to catch (so the tests above can fail)."""
    (tmp_path / "indexer").mkdir()
    (tmp_path / "indexer" / "__init__.py").write_text("")
    (tmp_path / "indexer" / "ok.py").write_text("import numpy\nfrom . import store\n")
    (tmp_path / "indexer" / "bad.py").write_text("def f():\n    import torch.nn\n\nfrom clik.topic import topic_key\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "__init__.py").write_text("")
    (tmp_path / "api" / "routes").mkdir()
    (tmp_path / "api" / "routes" / "x.py").write_text("from ...worker import tasks\n")
    assert violations("indexer", tmp_path) == [
        "indexer/bad.py:2 imports torch.nn",
        "indexer/bad.py:4 imports clik.topic",
    ]
    # `from ...worker` in api/routes/x.py climbs above api/ to the top-level worker package.
    assert violations("api", tmp_path) == ["api/routes/x.py:1 imports worker"]


def shared_helper_violations(root: Path = ROOT) -> list[str]:
    """Imports by tests (and benchmarks) of another test module or a conftest: helpers they share
    live in tests/support/ (a conftest may be loaded under another module name than an import
    gives it, and a test module imported for its helpers runs its own imports and fixtures)."""
    bad = []
    for top in ("tests", "benchmarks"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            for line, name in imported_modules(path.read_text(encoding="utf-8"), ".".join(rel.with_suffix("").parts)):
                last = name.split(".")[-1]
                if name.startswith("tests.") and (last == "conftest" or last.startswith("test_")):
                    bad.append(f"{rel}:{line} imports {name}")
    return bad


def test_tests_share_helpers_only_through_tests_support(tmp_path):
    assert shared_helper_violations() == [], "move the helper into tests/support/"
    (tmp_path / "tests" / "api").mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "tests" / "api" / "test_a.py").write_text(
        "from tests.api.conftest import API_KEY\nfrom tests.support.images import jpeg_bytes\n"
    )
    (tmp_path / "benchmarks" / "b.py").write_text("def f():\n    from tests.worker.test_tasks import STORE_URL\n")
    assert shared_helper_violations(tmp_path) == [
        "tests/api/test_a.py:1 imports tests.api.conftest",
        "benchmarks/b.py:2 imports tests.worker.test_tasks",
    ]
