# Esteira: every target sets up what it needs first.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# uv on the PATH, or the one `make setup` installs with pip (evaluated when first used).
UV = $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)
RUN = $(UV) run --frozen --python python3

.PHONY: setup run test lint format bench bench-ruptura bench-scraper bench-fallback bench-fair bench-load bench-edge bench-gateway \
	images manifests helm-lint dev

setup:
	@scripts/setup.sh

run: setup ## the whole local stack in the foreground; Ctrl-C stops it
	$(RUN) esteira up

# Two test processes (more on a bigger machine, at most four): most tests wait on real servers
# and browsers, so two share a 2-core machine well; each has its own Redis and PostgreSQL.
test: lint ## lint, then every test with real redis-server, PostgreSQL, Chromium and Prometheus
	$(RUN) pytest --numprocesses=auto --maxprocesses=4 --dist=worksteal

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/core/esteira_core libs/ruptura/esteira_ruptura libs/scraping/esteira_scraping \
		services/api/esteira_api services/ruptura-worker/esteira_ruptura_worker \
		services/scraper-worker/esteira_scraper_worker dev/portal/esteira_portal cli/esteira_cli \
		libs/testing/esteira_testing dev/tools/esteira_devtools

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: setup ## every benchmark; each prints a table and one summary line
	$(RUN) python -m bench

bench-ruptura: setup
	$(RUN) python -m bench ruptura

bench-scraper: setup
	$(RUN) python -m bench scraper

bench-fallback: setup
	$(RUN) python -m bench fallback

bench-edge: setup ## 20,000 idle partial requests and 2 MiB bodies without a key, at once
	$(RUN) python -m bench edge

bench-gateway: setup ## the gateway's CPU per authenticated request; ESTEIRA_BENCH_BASE=<commit> compares
	$(RUN) python -m bench gateway

bench-fair: setup ## one tenant's small work beside another tenant's backlog
	$(RUN) python -m bench fair

bench-load: setup ## 2,000 users with the seeds' profile on the whole local stack, measured from the client (make bench runs it too; 2-5 min)
	$(RUN) python -m bench load

images: ## the three container images, with docker or podman (IMAGE_REGISTRY, IMAGE_TAG)
	scripts/images.sh

manifests: setup ## values.schema.json, the chart's values table and deploy/k8s, from the chart
	$(RUN) python -m esteira_devtools.chart manifests

helm-lint: setup ## helm lint --strict of every ci/*-values.yaml scenario (no helm binary needed)
	$(RUN) python -m esteira_devtools.chart lint

dev: ## skaffold dev: build, deploy through the chart, port-forward the gateway to :8000
	skaffold dev --port-forward
