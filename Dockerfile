# syntax=docker/dockerfile:1
# One Dockerfile for the three images, built from the repository root with
# `--target SERVICE --build-arg SERVICE=SERVICE` (`make images` and skaffold.yaml do):
#   api             esteira-api             the gateway (with Chromium: it scrapes inline when the
#                                           scraper queue is unhealthy)
#   ruptura-worker  esteira-ruptura-worker  the ruptura pool
#   scraper-worker  esteira-scraper-worker  the scraper pool (with Chromium)
# Each image holds only its own package and the libraries it depends on (uv sync --package),
# in a virtualenv copied into a slim runtime stage, run as uid 10001 on a read-only root
# filesystem (only /tmp needs to be writable). Base images are build arguments.

ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- build: dependencies first (cached while the lock is unchanged), then the workspace ----
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
WORKDIR /app
ARG SERVICE
RUN case "${SERVICE}" in api|ruptura-worker|scraper-worker) ;; \
      *) echo "--build-arg SERVICE=api|ruptura-worker|scraper-worker" >&2; exit 1 ;; esac
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-workspace --package "esteira-${SERVICE}"
COPY libs libs
COPY services services
COPY dev dev
COPY cli cli
RUN uv sync --frozen --no-dev --no-editable --package "esteira-${SERVICE}"

# ---- runtime bases ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 esteira \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin esteira
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
WORKDIR /app
USER 10001:10001

FROM runtime AS runtime-browser
USER 0
# Debian's Chromium and its matching chromedriver; fonts so pages render text; tini as PID 1,
# which reaps the Chromium processes a killed browser tree leaves behind (Python as PID 1
# would not, and the zombies would pile up in a long-lived pod).
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver fonts-liberation tini \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--"]

# ---- the images ----
FROM runtime-browser AS api
COPY --from=build /app/.venv /app/.venv
EXPOSE 8000
ENV ESTEIRA_API_HOST=0.0.0.0
CMD ["python", "-m", "esteira_api"]

FROM runtime AS ruptura-worker
COPY --from=build /app/.venv /app/.venv
EXPOSE 9101
CMD ["python", "-m", "esteira_ruptura_worker"]

FROM runtime-browser AS scraper-worker
COPY --from=build /app/.venv /app/.venv
EXPOSE 9102
CMD ["python", "-m", "esteira_scraper_worker"]
