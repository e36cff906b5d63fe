"""Settings of the CLI's own commands (store, models directory), typed, from CLIK_ variables."""
from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.contracts import DEFAULT_STORE_PREFIX


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIK_", extra="ignore")

    # None: the embedded store in ./.clik/store (no Redis needed); redis://... for a deployment.
    store_url: str | None = None
    store_prefix: str = DEFAULT_STORE_PREFIX
    # Where `clik models watch` looks for new bundles (one folder per bundle).
    models_dir: Path = Path("models")
    # `clik events`: an event pending this long on a consumer (killed, or stuck) is claimed by another.
    events_claim_idle_ms: int = 30_000


def open_cli_store(store_url: str | None = None):
    """The store a command works on: --store flag, else CLIK_STORE_URL, else the embedded one."""
    from indexer.config import open_store

    settings = CliSettings()
    return open_store(store_url or settings.store_url, prefix=settings.store_prefix)
