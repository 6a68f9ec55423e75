#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to run and test Esteira; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(redis-server redis-sentinel postgresql chromium chromium-driver prometheus openssl nodejs)
# npm comes with some nodejs builds; Debian packages it apart.
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
# Debian's packages may start system services; Esteira runs its own on other ports, so leave them.

# uv from PyPI (Debian 12 does not package it); `python3 -m uv` works wherever pip put it.
if command -v uv >/dev/null 2>&1; then
  uv=(uv)
else
  if ! python3 -m uv --version >/dev/null 2>&1; then
    echo "setup: installing uv"
    python3 -m pip install --quiet --user uv 2>/dev/null \
      || python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
      || python3 -m pip install --quiet uv
  fi
  uv=(python3 -m uv)
fi
# uv must use the machine's Python: nothing is downloaded outside the package registries.
UV_PYTHON_DOWNLOADS=never "${uv[@]}" sync --frozen --python python3 --quiet
# The published KEDA and Prometheus-operator CRD schemas the chart tests validate against, from
# the npm registry at the versions its lock file pins (installed again when the lock changes).
crds=tests/deploy/crds
if ! cmp -s "$crds/package-lock.json" "$crds/node_modules/.esteira-lock" 2>/dev/null; then
  echo "setup: installing the CRD schemas ($crds)"
  npm ci --prefix "$crds" --no-audit --no-fund --loglevel=error >/dev/null
  cp "$crds/package-lock.json" "$crds/node_modules/.esteira-lock"
fi
echo "setup: ready (.venv)"
