"""One configuration file for every part (CLI, API, worker): a flat TOML of CLIK_ settings.

    # clik.toml
    store_url = "redis://127.0.0.1:6379/0"
    api_keys = ["change-me"]
    file_roots = ["/data/images"]

Each key is a setting name without the ``CLIK_`` prefix. The file is applied by exporting its
values as ``CLIK_<KEY>`` environment variables that are not set already, so the order is
flags > environment > file > defaults for every typed settings class (``worker.settings``,
``api.settings``, ``clik_cli.settings``) and also for processes the CLI starts (Celery workers).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

DEFAULT_FILE = Path("clik.toml")
ENV_PREFIX = "CLIK_"


class ConfigFileError(ValueError):
    pass


def read_config_file(path: Path) -> dict[str, str]:
    """The file's settings as environment strings (lists and tables as JSON)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if not key.replace("_", "").isalnum():
            raise ConfigFileError(f"{path}: key {key!r}: setting names are letters, digits and _")
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def apply_config_file(path: Path | None) -> Path | None:
    """Export the file's settings to the environment (existing variables win). Returns the file
    applied: ``path``, else ./clik.toml when it exists, else None."""
    if path is None:
        if not DEFAULT_FILE.is_file():
            return None
        path = DEFAULT_FILE
    for key, value in read_config_file(path).items():
        os.environ.setdefault(ENV_PREFIX + key.upper(), value)
    return path
