"""service_config: one store mixin, one default per role, and the same CLIK_* names everywhere."""

from __future__ import annotations

import pytest

from service_config.store import CLI_STORE_URL, SERVICE_STORE_URL


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch):
    for name in ("CLIK_STORE_URL", "CLIK_STORE_PREFIX"):
        monkeypatch.delenv(name, raising=False)


def role_settings():
    from api.settings import ApiSettings
    from clik_cli.settings import CliSettings
    from worker.settings import WorkerSettings

    return {"api": ApiSettings, "worker": WorkerSettings, "cli": CliSettings}


def test_each_role_has_its_documented_default_store():
    roles = role_settings()
    assert roles["api"](_env_file=None).store_url == SERVICE_STORE_URL == "redis://127.0.0.1:6379/0"
    assert roles["worker"](_env_file=None).store_url == SERVICE_STORE_URL
    assert roles["cli"](_env_file=None).store_url is CLI_STORE_URL is None  # the embedded ./.clik/store


def test_one_variable_names_the_store_for_every_role(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIK_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("CLIK_STORE_PREFIX", "other:")
    for name, cls in role_settings().items():
        settings = cls(_env_file=None)
        assert (settings.store_url, settings.store_prefix) == (str(tmp_path / "store"), "other:"), name


def test_open_store_prefers_the_flag_over_the_setting(tmp_path):
    from clik_cli.settings import CliSettings
    from indexer.embedded_store import EmbeddedStore

    settings = CliSettings(_env_file=None, store_url=str(tmp_path / "from-env"))
    with settings.open_store(str(tmp_path / "from-flag")) as store:
        assert isinstance(store, EmbeddedStore)
    assert (tmp_path / "from-flag").is_dir() and not (tmp_path / "from-env").exists()
