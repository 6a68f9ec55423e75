#!/usr/bin/env bash
# Builds the three images from the one Dockerfile with whichever engine exists (docker, else
# podman). IMAGE_REGISTRY and IMAGE_TAG name them (default: ghcr.io/esteira and the commit); PYTHON_IMAGE and UV_IMAGE
# replace the base images.
set -euo pipefail
cd "$(dirname "$0")/.."

# docker when its daemon answers (a docker client alone is no engine), else podman.
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v podman >/dev/null; then
  engine=podman
else
  echo "images: no container engine: neither a running docker nor podman" >&2
  exit 1
fi
registry=${IMAGE_REGISTRY:-ghcr.io/esteira}
tag=${IMAGE_TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
for service in api ruptura-worker scraper-worker; do
  image="${registry}/esteira-${service}:${tag}"
  echo "images: building ${image} with ${engine}"
  "${engine}" build --target "${service}" --build-arg "SERVICE=${service}" \
    ${PYTHON_IMAGE:+--build-arg "PYTHON_IMAGE=${PYTHON_IMAGE}"} \
    ${UV_IMAGE:+--build-arg "UV_IMAGE=${UV_IMAGE}"} \
    --tag "${image}" .
done
