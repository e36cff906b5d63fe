"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the Compose
specification's JSON schema (as vendored by check-jsonschema), and every command a service of our
image runs must parse as a real `clik` command line."""

from __future__ import annotations

import copy
import json
import re
import shlex
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml

from clik_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose_schema() -> dict:
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def validate(doc: dict) -> None:
    jsonschema.validate(doc, compose_schema(), cls=jsonschema.Draft7Validator)


def test_compose_file_follows_the_compose_specification():
    validate(load_compose())


def test_the_schema_check_catches_mistakes():
    doc = load_compose()
    for mutate in (
        lambda d: d.update(servics={}),  # a typo at the top level
        lambda d: d["services"]["api"]["depends_on"]["redis"].update(condition="healthy"),  # not an enum value
        lambda d: d["services"]["api"]["deploy"].update(gpus=1),  # no such key under deploy
        lambda d: d["services"]["worker-gpu"]["deploy"]["resources"]["reservations"].update(devices="all"),
    ):
        broken = copy.deepcopy(doc)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


class BadCommandLine(Exception):
    pass


def _parse_clik(argv: list[str]) -> None:
    """Parse a command line the way `clik` would, without running it (BadCommandLine if wrong).
    Walks sub-command names (none of our deployments uses options of the groups themselves).
    Typer vendors its own click, so commands are recognised by what they do, not by class."""
    if not argv or argv[0] != "clik":
        raise BadCommandLine(f"not a clik command: {argv}")
    name, args = "clik", list(argv[1:])
    command = typer.main.get_command(app)
    parent = None
    while hasattr(command, "get_command"):  # a group
        ctx = command.context_class(command, info_name=name, parent=parent)
        if not args:
            raise BadCommandLine(f"{name}: a sub-command is missing")
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise BadCommandLine(f"no such command {name!r}")
        command, parent = sub, ctx
    try:
        command.make_context(name, args, parent=parent)
    except Exception as exc:  # typer's UsageError family: NoSuchOption, BadParameter, ...
        if "UsageError" not in {c.__name__ for c in type(exc).__mro__}:
            raise
        raise BadCommandLine(f"{argv}: {exc}") from exc


def test_every_service_of_our_image_runs_a_real_clik_command():
    services = load_compose()["services"]
    ours = {name: s for name, s in services.items() if "build" in s}
    assert {"api", "worker-cpu", "worker-gpu", "model-watcher"} <= set(ours)
    for service in ours.values():
        _parse_clik(service["command"])
    for wrong in (
        ["clik", "serve", "--no-such-flag"],
        ["clik", "models", "nope"],
        ["clik", "models"],
        ["clik", "serve", "--port", "eighty"],
        ["celery", "worker"],
    ):
        with pytest.raises(BadCommandLine):  # the check itself can fail
            _parse_clik(wrong)


def test_deployment_shape():
    doc = load_compose()
    s = doc["services"]
    assert "--appendonly" in s["redis"]["command"] and "redis-data:/data" in s["redis"]["volumes"]
    assert s["api"]["deploy"]["replicas"] >= 2
    gpu = s["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("redis", "api", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in s[name], name
    assert s["flower"]["environment"]["CELERY_BROKER_URL"] == s["api"]["environment"]["CLIK_BROKER_URL"]
    # every setting the file passes is one the settings classes know
    from api.settings import ApiSettings
    from clik_cli.settings import CliSettings
    from worker.settings import WorkerSettings

    known = {f.upper() for cls in (ApiSettings, WorkerSettings, CliSettings) for f in cls.model_fields}
    for name, service in s.items():
        for key in service.get("environment", {}):
            if key.startswith("CLIK_"):
                assert key.removeprefix("CLIK_") in known, f"{name}: unknown setting {key}"


def test_dockerfile_copies_what_exists_and_installs_real_extras():
    text = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) ", text, flags=re.M):
        assert (ROOT / src).exists(), src
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for group in re.findall(r"pip install '\.\[([^\]]+)\]'", text):
        for extra in group.split(","):
            assert extra in extras, extra
    cmd = re.search(r"^CMD (\[.*\])$", text, flags=re.M).group(1)
    _parse_clik(json.loads(cmd))
    assert shlex.split("clik serve")  # the image's default command is the API
