#!/usr/bin/env bash
# Bring docker-compose.yml up with podman on a machine that reaches no container registry, then
# run the demo in the image and a smoke test against the stack (scripts/compose_smoke.py).
#
#   bash scripts/compose-up.sh            # build what is missing, up, demo, smoke test
#   bash scripts/compose-up.sh down       # stop and remove the stack (volumes kept)
#
# Needs: podman, runc, debootstrap (Debian packages), podman-compose (PyPI; PODMAN_COMPOSE=path),
# and a Python with this project's test extras (pyyaml, httpx) for the smoke test (PYTHON=...).
# The images come from Debian packages (debootstrap, then `podman import`) and wheels pip
# downloads on the host, so only the package registries are needed. Where a registry is reachable,
# plain `docker compose up -d` builds from python:3.11-slim as before.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${CLIK_COMPOSE_CACHE:-$ROOT/.cache/compose}   # rootfs, wheelhouse, demo output (git-ignored)
PYTHON=${PYTHON:-python3}
PODMAN_COMPOSE=${PODMAN_COMPOSE:-podman-compose}
BASE=localhost/clik-base:bookworm
# Limits and runtime for machines that withhold CAP_SYS_RESOURCE: deploy/offline/containers.conf.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/offline/containers.conf}
# docker-compose.yml takes its images from these (defaults: the registry images).
export CLIK_IMAGE=localhost/clik:latest
export CLIK_REDIS_IMAGE=localhost/clik-redis:bookworm
export CLIK_FLOWER_IMAGE=localhost/clik-flower:bookworm

say() { echo "== $*"; }
need() { command -v "$1" >/dev/null || { echo "missing $1 ($2)" >&2; exit 2; }; }
need podman "apt-get install podman runc"
need "$PODMAN_COMPOSE" "pip install podman-compose"
mkdir -p "$CACHE"
if [ ! -f .env ]; then
  say "writing .env with a new API key (git-ignored)"
  echo "CLIK_API_KEYS=[\"compose-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')\"]" > .env
fi

# docker-compose.yml as podman-compose runs it (one service per API replica, each on one host
# port: deploy/offline/podman_compose_file.py says why).
"$PYTHON" deploy/offline/podman_compose_file.py docker-compose.yml "$CACHE/compose.podman.yml"
COMPOSE="$PODMAN_COMPOSE --env-file $ROOT/.env -f $CACHE/compose.podman.yml"

if [ "${1:-up}" = down ]; then
  $COMPOSE down
  exit 0
fi

if ! podman image exists "$BASE"; then
  need debootstrap "apt-get install debootstrap"
  say "base image $BASE from Debian packages (debootstrap, a few minutes)"
  rm -rf "$CACHE/rootfs"
  # Debian 12's Python is 3.11, the version the project requires; Redis for the redis service.
  debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,redis-server,redis-tools,procps \
    bookworm "$CACHE/rootfs" ${DEBIAN_MIRROR:-}
  tar -C "$CACHE/rootfs" -c . | podman import - "$BASE"
  rm -rf "$CACHE/rootfs"
fi

# Wheels for every image, downloaded here by pip (it may reach PyPI where the containers may not).
# Debian 12's Python is 3.11.2: redis-py needs async-timeout below 3.11.3, which this host's
# Python may not ask for, so it is named. Rebuilt when pyproject.toml changes.
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$CACHE/wheels/.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "wheelhouse $CACHE/wheels (pip download)"
  mkdir -p "$CACHE/wheels"
  "$PYTHON" -m pip download --quiet -d "$CACHE/wheels" '.[worker,serve,train]' \
    'flower>=2,<3' 'setuptools>=77' wheel 'async-timeout>=4.0.3'
  echo "$stamp" > "$CACHE/wheels/.stamp"
fi
offline=(--build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -v "$CACHE/wheels:/wheels:ro")

# One build at a time: two concurrent podman builds failed here ("did not get container create
# message from subprocess: EOF").
say "images (podman build; the clik image only rebuilds the layers whose files changed)"
podman build --quiet -t "$CLIK_IMAGE" --build-arg BASE_IMAGE="$BASE" "${offline[@]}" . >/dev/null
podman build --quiet -t "$CLIK_REDIS_IMAGE" --build-arg BASE_IMAGE="$BASE" \
  -f deploy/offline/redis.Containerfile deploy/offline >/dev/null
podman build --quiet -t "$CLIK_FLOWER_IMAGE" --build-arg BASE_IMAGE="$BASE" "${offline[@]}" \
  -f deploy/offline/flower.Containerfile deploy/offline >/dev/null

say "podman-compose up -d"
$COMPOSE up -d --no-build

say "demo in the image (clik demo --small, embedded store): a model bundle and a catalogue"
rm -rf "$CACHE/demo" && mkdir -p "$CACHE/demo"
$COMPOSE run --rm --no-deps -u root -v "$CACHE/demo:/demo" api \
  clik demo --small --no-serve --workdir /demo --port 8765

say "bundle into the models volume, images into the images volume; activate on the stack's Redis"
$COMPOSE run --rm --no-deps -u root -v "$CACHE/demo:/demo:ro" -v images:/images api \
  sh -c 'rm -rf /models/demo /images/demo && cp -r /demo/models/demo /models/demo && cp -r /demo/data /images/demo \
         && chown -R clik /models/demo /images/demo'  # copied as root; the services run as clik
$COMPOSE run --rm api clik models activate /models/demo --yes

say "smoke test over HTTP (both API replicas, the CPU worker, Flower)"
PYTHONPATH="$ROOT" "$PYTHON" scripts/compose_smoke.py --demo "$CACHE/demo" --env .env
