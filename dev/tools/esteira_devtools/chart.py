"""The Helm chart, offline: render it with the Helm SDK (no helm binary, no cluster), lint it,
and write what is generated from it.

    python -m esteira_devtools.chart manifests [--check]   # values docs, schema, deploy/k8s
    python -m esteira_devtools.chart lint                  # every ci/*-values.yaml, strictly

Generated: the chart's values.schema.json and values table (from values.yaml's comments, see
chart_docs), deploy/k8s/esteira.yaml, the chart rendered with its default values, and
deploy/k8s/prometheus-rules.yml, that release's rules as a plain Prometheus rules file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from esteira_devtools import chart_docs

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "esteira"
MANIFESTS = ROOT / "deploy" / "k8s" / "esteira.yaml"
RULES = ROOT / "deploy" / "k8s" / "prometheus-rules.yml"
RELEASE = NAMESPACE = "esteira"
WARNING = 2  # helm lint's severities: 1 info, 2 warning, 3 error
RULES_HEADER = (
    "# The rules of the chart deploy/helm/esteira for release `esteira` in namespace `esteira`,\n"
    "# as a plain Prometheus rules file (the chart's PrometheusRule holds the same), written by\n"
    "# `make manifests`. Do not edit: change the chart and run it again.\n"
)
HEADER = (
    "# The Helm chart deploy/helm/esteira rendered with its default values (release and namespace\n"
    "# `esteira`) by `make manifests`. Do not edit: change the chart and run it again.\n"
)


def scenarios() -> dict[str, dict[str, Any]]:
    """Each ci/<name>-values.yaml: its name and values."""
    return {
        path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text()) or {}
        for path in sorted((CHART / "ci").glob("*-values.yaml"))
    }


def render_files(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=release, namespace=namespace, is_install=True)


def render(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every object the chart renders, in template order."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, release, namespace).items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def rules(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """A release's recording and alerting rules (its PrometheusRule's spec), as a plain
    Prometheus rules file."""
    forced = {**(values or {})}
    monitoring = {**forced.get("monitoring", {})}
    monitoring["prometheusRule"] = {**monitoring.get("prometheusRule", {}), "force": True}
    forced["monitoring"] = monitoring
    (rule,) = [o for o in render(forced, release, namespace) if o["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """`helm lint --strict`'s warnings and errors, as text; empty when clean."""
    report = helm.lint(CHART, values or {}, strict=True, namespace=NAMESPACE)
    findings = [
        f"{m.get('path', '')}: {m.get('error', '')}"
        for m in report.get("messages", [])
        if m.get("severity", 0) >= WARNING
    ]
    return findings + [str(error) for error in report.get("errors") or []]


def manifests() -> str:
    documents = [yaml.safe_dump(obj, sort_keys=False) for obj in render()]
    return HEADER + "---\n" + "---\n".join(documents)


def rules_file() -> str:
    return RULES_HEADER + yaml.safe_dump(rules(), sort_keys=False)


def _stale(outputs: dict[Path, str]) -> list[Path]:
    return [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "manifests":
        # The schema first: rendering validates the values against it.
        if "--check" in argv:
            stale = _stale(chart_docs.outputs()) or _stale(
                {MANIFESTS: manifests(), RULES: rules_file()}
            )
            for path in stale:
                sys.stderr.write(f"{path.relative_to(ROOT)} is stale: run make manifests\n")
            return 1 if stale else 0
        for outputs in (
            chart_docs.outputs,
            lambda: {MANIFESTS: manifests(), RULES: rules_file()},
        ):
            for path, text in outputs().items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                sys.stdout.write(f"wrote {path.relative_to(ROOT)}\n")
        return 0
    if command == "lint":
        failed = 0
        for name, values in scenarios().items():
            findings = lint(values)
            failed += bool(findings)
            sys.stdout.write(f"{name}: " + ("; ".join(findings) or "clean") + "\n")
        return 1 if failed else 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
