#!/usr/bin/env bash
# Create .venv and install the project with every extra. Safe to run again.
# torch/torchvision are pinned in pyproject.toml to the build that lies on this machine's disk,
# so pip takes them from there instead of downloading several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[all]'
echo "installed: $(.venv/bin/clik --help >/dev/null && echo 'clik CLI ok')"
