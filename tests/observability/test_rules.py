"""The chart's recording and alerting rules, unit-tested by `promtool test rules` on series this
test writes: the autoscaling signal with jobs waiting, running and both (a running job counted
once), capacity from the configured concurrency, two namespaces that do not see each other's
queues, and absent gateway metrics giving a firing alert and the KEDA trigger an empty answer
(which, with ignoreNullValues "false", KEDA counts as a failure: it holds its fallback replicas).

The rules are rendered from the chart for release `esteira` in two namespaces, `prod` and
`staging`, and loaded together, as one Prometheus would load both releases' PrometheusRules."""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from esteira_devtools import chart

RELEASE = "esteira"
NAMESPACES = {"prod": {"rupturaWorker": {"concurrency": 4}}, "staging": {}}


def gateway(namespace: str, name: str, **labels: str) -> str:
    """A gateway series of a release as a ServiceMonitor labels it."""
    every = {"namespace": namespace, "job": f"{RELEASE}-api", "instance": "10.0.0.1:8000", **labels}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in every.items()) + "}"


def worker(namespace: str, pool: str, name: str, **labels: str) -> str:
    every = {"namespace": namespace, "job": f"{RELEASE}-{pool}-worker", "instance": "10.0.0.2:9101"}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in {**every, **labels}.items()) + "}"


def queue(namespace: str, pool: str, ready: int, running: int) -> list[dict[str, str]]:
    """The gateway's queue gauges: `ready` waiting (never the running ones), `running` reported
    by the workers."""
    name = "esteira_queue_jobs"
    q = f"arq:queue:{pool}"
    return [
        {"series": gateway(namespace, name, queue=q, state="ready"), "values": f"{ready}x15"},
        {
            "series": gateway(namespace, name, queue=q, state="in_progress"),
            "values": f"{running}x15",
        },
        {"series": gateway(namespace, name, queue=q, state="deferred"), "values": "7x15"},
    ]


def demand(namespace: str, pool: str, value: float | None) -> dict[str, Any]:
    samples = []
    if value is not None:
        labels = (
            f'esteira:worker_demand:ratio{{namespace="{namespace}", pool="{pool}", '
            f'release="{RELEASE}"}}'
        )
        samples = [{"labels": labels, "value": value}]
    return {
        "expr": f'esteira:worker_demand:ratio{{namespace="{namespace}", pool="{pool}"}}',
        "eval_time": "2m",
        "exp_samples": samples,
    }


def keda_query(namespace: str, pool: str) -> str:
    """The query of the pool's ScaledObject in that namespace, as KEDA sends it."""
    values = {**NAMESPACES[namespace], "keda": {"enabled": True}}
    (scaled,) = [
        o
        for o in chart.render(values, RELEASE, namespace)
        if o["kind"] == "ScaledObject" and o["metadata"]["name"] == f"{RELEASE}-{pool}-worker"
    ]
    query: str = scaled["spec"]["triggers"][0]["metadata"]["query"]
    return query


def modes(namespace: str) -> list[dict[str, str]]:
    return [
        {
            "series": gateway(namespace, "esteira_queue_mode", queue=f"arq:queue:{p}"),
            "values": "1x15",
        }
        for p in ("ruptura", "scraper")
    ]


def cases() -> list[dict[str, Any]]:
    return [
        {
            "name": "jobs waiting, running, both; each namespace its own",
            "interval": "1m",
            "input_series": [
                # prod: scraper 6 waiting; ruptura 3 running, none waiting, capacity from the
                # configured concurrency (4: no ruptura worker reports its own).
                *queue("prod", "scraper", ready=6, running=0),
                *queue("prod", "ruptura", ready=0, running=3),
                # staging: scraper 4 waiting + 3 running on a live pod of capacity 3 (a second
                # gateway reports the same figures: max, not sum); ruptura idle on a live pod.
                *queue("staging", "scraper", ready=4, running=3),
                {
                    "series": gateway(
                        "staging",
                        "esteira_queue_jobs",
                        queue="arq:queue:scraper",
                        state="ready",
                        instance="10.0.0.9:8000",
                    ),
                    "values": "4x15",
                },
                {
                    "series": worker(
                        "staging", "scraper", "esteira_worker_capacity", queue="arq:queue:scraper"
                    ),
                    "values": "3x15",
                },
                *queue("staging", "ruptura", ready=0, running=0),
                {
                    "series": worker(
                        "staging", "ruptura", "esteira_worker_capacity", queue="arq:queue:ruptura"
                    ),
                    "values": "8x15",
                },
                *modes("prod"),
                *modes("staging"),
            ],
            "promql_expr_test": [
                demand("prod", "scraper", 2.0),  # 6 waiting / 3
                demand("prod", "ruptura", 0.75),  # 3 running / 4: one busy pod asks for no other
                demand("staging", "scraper", 7 / 3),  # (4 waiting + 3 running) / 3
                demand("staging", "ruptura", 0.0),
                # The KEDA trigger's own query: the same figures, one sample.
                {
                    "expr": keda_query("prod", "scraper"),
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 2.0}],
                },
                {
                    "expr": keda_query("staging", "scraper"),
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 7 / 3}],
                },
            ],
            "alert_rule_test": [
                {"alertname": "EsteiraGatewayMetricsAbsent", "eval_time": "10m", "exp_alerts": []},
            ],
        },
        {
            "name": "30 jobs waiting in staging are staging's alone",
            "interval": "1m",
            "input_series": [
                *queue("staging", "scraper", ready=30, running=0),
                {
                    "series": gateway("staging", "esteira_workers_online", pool="scraper"),
                    "values": "0x15",
                },
                *queue("prod", "scraper", ready=0, running=0),
                {
                    "series": gateway("prod", "esteira_workers_online", pool="scraper"),
                    "values": "0x15",
                },
                *modes("prod"),
                *modes("staging"),
            ],
            "promql_expr_test": [
                demand("staging", "scraper", 10.0),
                demand("prod", "scraper", 0.0),
                {
                    "expr": keda_query("prod", "scraper"),
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": 0.0}],
                },
            ],
            "alert_rule_test": [
                {
                    "alertname": "EsteiraNoWorkersWhileWorkWaits",
                    "eval_time": "10m",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "namespace": "staging",
                                "release": RELEASE,
                                "queue": "arq:queue:scraper",
                            },
                            "exp_annotations": {
                                "summary": "arq:queue:scraper: jobs wait and no worker is online",
                                "description": "The pool is not scaling up; check KEDA/HPA and "
                                "the worker pods.",
                            },
                        }
                    ],
                },
            ],
        },
        {
            "name": "no gateway metrics in prod: an alert, and an empty KEDA answer",
            "interval": "1m",
            "input_series": [
                # Prometheus cannot scrape prod's gateway (a NetworkPolicy, say): up is 0.
                {
                    "series": gateway("prod", "up"),
                    "values": "0x15",
                },
                *queue("staging", "scraper", ready=3, running=0),
                *modes("staging"),
            ],
            "promql_expr_test": [
                demand("prod", "scraper", None),
                {"expr": keda_query("prod", "scraper"), "eval_time": "2m", "exp_samples": []},
                demand("staging", "scraper", 1.0),
            ],
            "alert_rule_test": [
                {
                    "alertname": "EsteiraGatewayMetricsAbsent",
                    "eval_time": "10m",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "namespace": "prod",
                                "job": f"{RELEASE}-api",
                                "release": RELEASE,
                            },
                            "exp_annotations": {
                                "summary": f"prod/{RELEASE}: Prometheus has no metrics from the "
                                "gateway",
                                "description": "Autoscaling runs on KEDA's fallback replicas and "
                                "no other Esteira alert can fire. Check the ServiceMonitor's "
                                "labels, networkPolicy.metricsFrom and the api pods.",
                            },
                        }
                    ],
                },
                {
                    "alertname": "EsteiraMetricsTargetDown",
                    "eval_time": "10m",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "prod",
                                "job": f"{RELEASE}-api",
                                "instance": "10.0.0.1:8000",
                                "release": RELEASE,
                            },
                            "exp_annotations": {
                                "summary": f"{RELEASE}-api 10.0.0.1:8000: Prometheus cannot "
                                "scrape it",
                                "description": "The pod is down, or a NetworkPolicy refuses "
                                "Prometheus (networkPolicy.metricsFrom).",
                            },
                        }
                    ],
                },
                # Not yet: the alert waits 5 minutes, as its `for` says.
                {"alertname": "EsteiraGatewayMetricsAbsent", "eval_time": "3m", "exp_alerts": []},
            ],
        },
    ]


@pytest.fixture
def rule_files(tmp_path: Path) -> list[str]:
    names = []
    for namespace, values in NAMESPACES.items():
        path = tmp_path / f"{namespace}.yml"
        path.write_text(yaml.safe_dump(chart.rules(values, RELEASE, namespace)))
        names.append(path.name)
    return names


def test_promtool_unit_tests_of_the_rules_pass(tmp_path: Path, rule_files: list[str]) -> None:
    unit = {"rule_files": rule_files, "evaluation_interval": "1m", "tests": cases()}
    path = tmp_path / "rules-test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails(tmp_path: Path, rule_files: list[str]) -> None:
    """The check itself can fail: a demand that counts running jobs twice is refused."""
    case = cases()[0]
    case["promql_expr_test"] = [demand("prod", "ruptura", 1.5)]  # 3 running counted twice / 4
    case["alert_rule_test"] = []
    unit = {"rule_files": rule_files, "evaluation_interval": "1m", "tests": [case]}
    path = tmp_path / "rules-test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr
