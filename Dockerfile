# One image for every role (API, CPU worker, GPU worker, CLI jobs): the role is the command.
# torch==2.14.1 from PyPI is the CUDA build on x86_64, so the same image runs on GPU hosts;
# CPU-only hosts simply find no GPU and encode on the CPU.
# BASE_IMAGE: any Debian-like image with Python 3.11 and venv; scripts/compose-up.sh passes one it
# builds from Debian packages where no container registry is reachable.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS base
# pip reads these from the environment: scripts/compose-up.sh installs from a local wheelhouse
# (PIP_NO_INDEX=1, PIP_FIND_LINKS=/wheels mounted into the build); unset, pip uses PyPI.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    PATH=/opt/venv/bin:$PATH

# A virtual environment: a Debian base refuses pip installs into its system Python (PEP 668).
RUN python3 -m venv /opt/venv

WORKDIR /app
# Dependencies first so code edits do not reinstall torch.
COPY pyproject.toml README.md ./
COPY clik/__init__.py clik/__init__.py
RUN mkdir -p training indexer service_config worker api clik_cli \
    && for p in training indexer service_config worker api clik_cli; do touch $p/__init__.py; done \
    && pip install '.[worker,serve,train]' \
    && pip uninstall -y clik

COPY clik ./clik
COPY training ./training
COPY indexer ./indexer
COPY service_config ./service_config
COPY worker ./worker
COPY api ./api
COPY clik_cli ./clik_cli
COPY configs ./configs
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 clik \
    && mkdir -p /models /data && chown clik /models /data
USER clik

EXPOSE 8000
# Overridden per service in docker-compose.yml.
CMD ["clik", "serve", "--host", "0.0.0.0", "--port", "8000"]
