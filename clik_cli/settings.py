"""Settings of the CLI's own commands (store, models directory), typed, from CLIK_ variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from service_config.store import CLI_STORE_URL, StoreSettings


class CliSettings(StoreSettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIK_", extra="ignore")

    # The CLI's default store is the embedded one in ./.clik/store (no Redis needed); redis://...
    # for a deployment. Each role's default: service_config/store.py.
    store_url: str | None = CLI_STORE_URL
    # Where `clik models watch` looks for new bundles (one folder per bundle).
    models_dir: Path = Path("models")
    # `clik events`: an event pending this long on a consumer (killed, or stuck) is claimed by another.
    events_claim_idle_ms: int = 30_000


def open_cli_store(store_url: str | None = None):
    """The store a command works on: --store flag, else CLIK_STORE_URL, else the embedded one."""
    return CliSettings().open_store(store_url)
