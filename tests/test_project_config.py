"""One Python floor: requires-python, ruff's target and mypy's version say the same thing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_python_floor_is_stated_once_for_every_tool():
    floor = re.fullmatch(r">=\s*3\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert floor, "requires-python should be a plain lower bound"
    minor = int(floor.group(1))
    # tomllib (clik_cli/config_file.py) is 3.11+, and the pinned torch wheel is cp311.
    assert minor >= 11
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py3{minor}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == f"3.{minor}"
