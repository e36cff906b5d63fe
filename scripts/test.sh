#!/usr/bin/env bash
# The project's test command: installs from the repo's own files, starts the services the tests
# talk to when they are not running, lints and type-checks (settings in pyproject.toml), then
# runs the whole suite. scripts/test-fast.sh is the quick loop while working.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# The web page's test drives Debian's Chromium (playwright's own browser downloads are unreachable here).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi
# Lint and types first: seconds, and a failure there says more than a failing test.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
export CLIK_REQUIRE_BROWSER=1
# Tests that need Redis fail instead of skipping (tests/support/services.py): CI must not pass half-run.
export CLIK_REQUIRE_SERVICES=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Two test processes: the slow tests mostly wait on Celery workers, uvicorn and training
# subprocesses. --dist loadfile keeps each file on one process (module-scoped rigs, tests that
# run in order). CLIK_TEST_PROCESSES=0 runs everything in this process. Tests marked `serial`
# time kills against leases: beside another test process a chunk outlived its lease, so they
# run afterwards, alone. Exit status 5 (nothing selected, e.g. a path with no serial test) is fine.
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${CLIK_TEST_PROCESSES:-2}" --dist loadfile -m "not serial" "$@" \
  || status=$?
[ "$status" -eq 5 ] && status=0
serial=0
.venv/bin/python -m pytest -q -p no:cacheprovider -m serial "$@" || serial=$?
[ "$serial" -eq 5 ] && serial=0
exit $(( status != 0 ? status : serial ))
