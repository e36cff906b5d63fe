import pytest

from tests.support.services import REQUIRE_ENV, service_missing


@pytest.mark.parametrize("value", ["", "0"])
def test_a_missing_service_skips_by_default(monkeypatch, value):
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.skip.Exception, match="Redis unreachable"):
        service_missing("Redis unreachable (refused)")


def test_a_missing_service_fails_when_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="Redis unreachable"):
        service_missing("Redis unreachable (refused)")
