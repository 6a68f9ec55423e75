"""values.yaml is the one place the chart's values are documented: each value's `# --` comment.
This writes what is derived from it: values.schema.json (types, ranges, descriptions) and the
values table of the chart's README (between its markers). `make manifests` writes them (see
esteira_devtools.chart); a test fails when either is stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "esteira"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
PIPE = "\\|"  # a | inside a markdown table cell

PORT = {"minimum": 1, "maximum": 65535}
AT_LEAST_ONE = {"minimum": 1}
# Constraints a default value cannot show.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "autoscaling.mode": {"enum": ["keda", "hpa", "none"]},
    "config.logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "api.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    # No password in a URL: URLs go into the ConfigMap (passwords come from Secrets).
    "redis.url": {"pattern": "^(redis|rediss|unix)://([^:@/]+@)?[^@]*$"},
    "database.url": {"pattern": "^(postgresql|sqlite)[a-z0-9+]*://([^:@/]+@)?[^@]*$"},
    # Empty (Esteira's own tables) or any SQLAlchemy URL, again without a password.
    "rupturaSource.url": {"pattern": "^$|^[a-z][a-z0-9+]*://([^:@/]+@)?[^@]*$"},
    "database.tls.sslMode": {
        "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
    },
    "api.ingress.paths": {"items": {"type": "string", "pattern": "^/"}, "minItems": 1},
    "extraVolumes": {"items": {"type": "object"}},
    "extraVolumeMounts": {"items": {"type": "object"}},
    "networkPolicy.dnsTo": {"items": {"type": "object"}},
    "networkPolicy.redisTo": {"items": {"type": "object"}},
    "networkPolicy.databaseTo": {"items": {"type": "object"}},
    "networkPolicy.rupturaSourceTo": {"items": {"type": "object"}},
    "networkPolicy.portal.except": {"items": {"type": "string"}},
    "networkPolicy.redisPort": {"maximum": 65535},
    "networkPolicy.databasePort": {"maximum": 65535},
    "networkPolicy.rupturaSourcePort": {"maximum": 65535},
    "networkPolicy.portal.port": {"maximum": 65535},
    # host:port, an IPv6 address in brackets ([fd00::7]:26379).
    "redis.sentinels": {
        "items": {
            "type": "string",
            "pattern": "^([^:,\\s\\[\\]]+|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}$",
        }
    },
    "redis.masterName": {"minLength": 1},
    "auth.apiKeys": {
        "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,62}:[0-9a-f]{64}$"}
    },
    "auth.corsOrigins": {"items": {"type": "string", "pattern": "^(\\*|https?://[^/\\s,]+)$"}},
    "imagePullSecrets": {"items": {"type": "string"}},
    "tolerations": {"items": {"type": "object"}},
    "networkPolicy.metricsFrom": {"items": {"type": "object"}},
    "networkPolicy.apiFrom": {"items": {"type": "object"}},
    "api.port": PORT,
    "api.service.port": PORT,
    "rupturaWorker.metricsPort": PORT,
    "scraperWorker.metricsPort": PORT,
    "api.autoscaling.targetCPUUtilizationPercentage": {"minimum": 1, "maximum": 100},
    "api.replicas": AT_LEAST_ONE,
    # One process a pod until the gateway's metrics are multiprocess-safe: scale with replicas.
    "api.workers": {"minimum": 1, "maximum": 1},
    "api.inlineScrapeLimit": AT_LEAST_ONE,
    "api.autoscaling.minReplicas": AT_LEAST_ONE,
    "api.autoscaling.maxReplicas": AT_LEAST_ONE,
    "auth.tenantRateBurst": AT_LEAST_ONE,
    "auth.tenantMaxQueuedOrders": AT_LEAST_ONE,
    "auth.tenantMaxQueuedLookups": AT_LEAST_ONE,
    "rupturaWorker.fairWindow": AT_LEAST_ONE,
    "scraperWorker.fairWindow": AT_LEAST_ONE,
    "scraperWorker.tmpSizeLimit": {"pattern": "^[0-9]+(Ki|Mi|Gi)$"},
    **{
        f"{pool}.{name}": AT_LEAST_ONE
        for pool in ("rupturaWorker", "scraperWorker")
        for name in (
            "concurrency",
            "jobTimeoutSeconds",
            "jobCompletionWaitSeconds",
            "terminationGracePeriodSeconds",
            "autoscaling.maxReplicas",
            "autoscaling.fallbackReplicas",
        )
    },
}
# Maps whose keys are the user's (environment variables, labels, selectors).
FREE_MAPS = {
    "global",
    "podAnnotations",
    "api.autoscaling.behavior",
    "autoscaling.behavior",
    "extraEnv",
    "api.env",
    "rupturaWorker.env",
    "scraperWorker.env",
    "nodeSelector",
    "affinity",
    "api.ingress.annotations",
    "serviceAccount.annotations",
    "monitoring.serviceMonitor.labels",
    "monitoring.prometheusRule.labels",
    "monitoring.dashboards.annotations",
}
RESOURCES = {
    "api.resources",
    "rupturaWorker.resources",
    "scraperWorker.resources",
    "redis.inChart.resources",
}


def comments(lines: list[str]) -> dict[str, str]:
    """Each key path -> its `# --` comment (continued by the `#` lines after it)."""
    found: dict[str, str] = {}
    path: list[str] = []
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
        elif stripped.startswith("#") and pending:
            pending.append(stripped.lstrip("#").strip())
        elif key := re.match(r"^(\s*)([A-Za-z]\w*):", line):
            path = [*path[: len(key.group(1)) // 2], key.group(2)]
            if pending:
                found[".".join(path)] = " ".join(pending)
            pending = []
        elif stripped:
            pending = []
    return found


def schema_of(path: str, value: Any, docs: dict[str, str]) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if path in docs:
        schema["description"] = docs[path]
    if path in RESOURCES:
        quantity = {"type": ["string", "number"]}
        limits = {"type": "object", "properties": {"cpu": quantity, "memory": quantity}}
        schema.update(
            type="object",
            additionalProperties=False,
            required=["requests", "limits"],
            properties={"requests": limits, "limits": limits},
        )
    elif path in FREE_MAPS:
        schema["type"] = "object"
    elif isinstance(value, bool):
        schema["type"] = "boolean"
    elif isinstance(value, int | float):
        schema.update(type="integer" if isinstance(value, int) else "number", minimum=0)
    elif isinstance(value, str):
        schema["type"] = "string"
    elif isinstance(value, list):
        schema["type"] = "array"
    elif isinstance(value, dict):
        schema.update(
            type="object",
            additionalProperties=False,
            properties={
                key: schema_of(f"{path}.{key}" if path else key, item, docs)
                for key, item in value.items()
            },
        )
    return {**schema, **CONSTRAINTS.get(path, {})}


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value and path not in FREE_MAPS | RESOURCES:
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    else:
        yield path, value


def values_table(values: dict[str, Any], docs: dict[str, str]) -> str:
    rows = ["| value | default | meaning |", "|---|---|---|"]
    for path, default in leaves(values):
        shown = json.dumps(default, ensure_ascii=False).replace("|", PIPE)
        meaning = docs.get(path, "").replace("|", PIPE)
        rows.append(f"| `{path}` | `{shown}` | {meaning} |")
    return "\n".join(rows)


def outputs() -> dict[Path, str]:
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    docs = comments(lines)
    undocumented = [path for path, _ in leaves(values) if path not in docs]
    if undocumented:
        raise SystemExit(f"values without a `# --` comment: {', '.join(undocumented)}")
    schema = {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "Esteira Helm chart values",
        **schema_of("", values, docs),
    }
    readme = (CHART / "README.md").read_text()
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    table = f"{BEGIN}\n{values_table(values, docs)}\n{END}"
    return {
        CHART / "values.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n",
        CHART / "README.md": head + table + tail,
    }
