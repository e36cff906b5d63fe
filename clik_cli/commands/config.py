from __future__ import annotations

import json

import typer

SECRET_FIELDS = {"api_keys"}


def config(
    show_secrets: bool = typer.Option(False, help="Print API keys instead of masking them."),
) -> None:
    """Print the effective configuration of the CLI, the API and the worker as JSON.

    Values come from flags, then CLIK_* environment variables, then the configuration file
    (--config, or ./clik.toml), then defaults.

    Example: CLIK_STORE_URL=redis://127.0.0.1:6379/0 clik --config clik.toml config
    """
    from pydantic import ValidationError

    from api.settings import ApiSettings
    from clik_cli.settings import CliSettings
    from worker.settings import WorkerSettings

    out = {}
    for name, cls in (("cli", CliSettings), ("api", ApiSettings), ("worker", WorkerSettings)):
        try:
            values = cls().model_dump(mode="json")
        except ValidationError as exc:
            typer.echo(f"error: invalid {name} settings: {exc}", err=True)
            raise typer.Exit(2)
        for key in SECRET_FIELDS & values.keys():
            if not show_secrets:
                values[key] = [f"***{k[-2:]}" if len(k) > 8 else "***" for k in values[key]]
        out[name] = values
    typer.echo(json.dumps(out, indent=2, sort_keys=True))
