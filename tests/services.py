"""What a test does when a service it needs (Redis) is not there: skip on a laptop, fail in CI.

scripts/test.sh starts Redis and sets CLIK_REQUIRE_SERVICES=1, so a CI run where Redis did not
come up fails loudly instead of passing with half the suite skipped.
"""
from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "CLIK_REQUIRE_SERVICES"


def service_missing(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: this run needs it)", pytrace=False)
    pytest.skip(reason)
