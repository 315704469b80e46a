# syntax=docker/dockerfile:1.7
# The recommend service image: `docker build -t reco-articles-serve .`
# Everything is configured from the environment at run time (RECO_* and PUBSUB_EMULATOR_HOST), e.g.
#   RECO_MODEL_ALIAS=champion|challenger  RECO_VARIANT=stable|canary  RECO_MLFLOW_TRACKING_URI=https://...
#   RECO_REDIS_URL=redis://10.0.0.3:6379/0  RECO_FEAST_URI=gs://bucket/feast  RECO_EVENTS_SINK=pubsub
#   RECO_PUBSUB_TOPIC=projects/p/topics/reco-events  RECO_WORKERS=2

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: resolve exactly the locked `serve` dependencies into /app/.venv -------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (cached until the lock changes), then the project itself, not editable.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --extra serve --no-dev --no-install-project
COPY src ./src
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --extra serve --no-dev --no-editable

# --- runtime: the virtualenv, the Feast definitions, a non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 reco \
 && useradd --system --uid 10001 --gid reco --home-dir /app --shell /usr/sbin/nologin reco \
 && mkdir -p /data \
 && chown reco:reco /data
WORKDIR /app
COPY --from=build --chown=reco:reco /app/.venv /app/.venv
COPY --chown=reco:reco feature_repo ./feature_repo
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    RECO_ENVIRONMENT=gke \
    RECO_WORKDIR=/data \
    RECO_FEATURE_REPO=/app/feature_repo \
    RECO_HOST=0.0.0.0 \
    RECO_PORT=8000 \
    RECO_WORKERS=1
USER 10001:10001
EXPOSE 8000
# Liveness only (process answers); readiness (model + online store) is /readyz, for the orchestrator.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('RECO_PORT', '8000')}/healthz\", timeout=2)"]
# SIGTERM (Kubernetes) -> graceful shutdown: buffered events are flushed before exit.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.recommend"]
