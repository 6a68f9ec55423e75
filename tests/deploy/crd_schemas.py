"""The parts of the KEDA and Prometheus-operator CRD schemas that the chart's objects use,
written from the CRDs' reference documentation (keda.sh/v1alpha1 ScaledObject,
monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule), stricter than the CRDs: unknown
fields are refused wherever the chart writes, so a typo cannot pass (the published schemas,
which test_chart also checks every object against, accept unknown fields: the API server
would prune them, or refuse them under kubectl's strict field validation)."""

from typing import Any

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
STRING_MAP = {"type": "object", "additionalProperties": STRING}
LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": STRING, "namespace": STRING, "labels": STRING_MAP},
}


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


SCALED_OBJECT = _kind(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": STRING, "kind": STRING, "apiVersion": STRING},
                "additionalProperties": False,
            },
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": INTEGER,
            "cooldownPeriod": INTEGER,
            "fallback": {
                "type": "object",
                "required": ["failureThreshold", "replicas"],
                "additionalProperties": False,
                "properties": {
                    "failureThreshold": {"type": "integer", "minimum": 0},
                    "replicas": {"type": "integer", "minimum": 0},
                },
            },
            "advanced": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "horizontalPodAutoscalerConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"behavior": {"type": "object"}, "name": STRING},
                    },
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                },
            },
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "prometheus"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "metadata": {
                            "type": "object",
                            "required": ["serverAddress", "query", "threshold"],
                            "additionalProperties": False,
                            "properties": {
                                "serverAddress": {"type": "string", "pattern": "^https?://"},
                                "query": STRING,
                                "threshold": {"type": "string", "pattern": "^[0-9.]+$"},
                                "activationThreshold": {"type": "string", "pattern": "^[0-9.]+$"},
                                "ignoreNullValues": {"enum": ["true", "false"]},
                            },
                        },
                    },
                },
            },
        },
    },
)

SERVICE_MONITOR = _kind(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": LABEL_SELECTOR,
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["port"],
                    "additionalProperties": False,
                    "properties": {
                        "port": STRING,
                        "path": STRING,
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    },
                },
            },
        },
    },
)

RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "properties": {
        "record": STRING,
        "alert": STRING,
        "expr": STRING,
        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
}

PROMETHEUS_RULE = _kind(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": STRING,
                        "interval": STRING,
                        "rules": {"type": "array", "items": RULE},
                    },
                },
            }
        },
    },
)

BY_KIND = {
    "ScaledObject": SCALED_OBJECT,
    "ServiceMonitor": SERVICE_MONITOR,
    "PrometheusRule": PROMETHEUS_RULE,
}
