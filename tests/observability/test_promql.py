"""Every PromQL expression Esteira ships — dashboard panels, recording and alerting rules, the
KEDA triggers — parses with promtool, and returns data from a real Prometheus scraping a real
stack: two gateways (one has lost Redis), a ruptura and a scraper worker driving Chromium, the
demo portal, under a little of every kind of work."""

import json
import re
import subprocess
import time

import httpx
import pytest
import yaml

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_devtools import chart
from esteira_portal.records import FIRST_OS
from esteira_testing.components import seeded_database

RULES = chart.RULES  # release `esteira` in namespace `esteira`, as the targets below are labelled
ALERT = "alert: "
# The dashboards' variables, as Grafana fills them for that release.
VARIABLES = {"$namespace": "esteira", "$release": "esteira"}
SELECTOR = re.compile(r"(?<![\"\w-])(esteira[a-z0-9_:]*)(\{[^}]*\})?")  # not in a label value


def expressions() -> dict[str, str]:
    """Where each expression comes from -> the expression."""
    found: dict[str, str] = {}
    for path in sorted((chart.CHART / "files" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expression = target["expr"]
                for variable, value in VARIABLES.items():
                    expression = expression.replace(variable, value)
                found[f"{path.name}: {panel['title']} {target['refId']}"] = expression
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found[ALERT + rule["alert"]] = rule["expr"]
            else:
                found[f"rules: {rule['record']} {rule.get('labels', {}).get('pool', '')}"] = rule[
                    "expr"
                ]
    for obj in chart.render(chart.scenarios()["keda"]):
        if obj["kind"] == "ScaledObject":
            query = obj["spec"]["triggers"][0]["metadata"]["query"]
            found[f"ScaledObject {obj['metadata']['name']}"] = query
    return found


def test_every_expression_parses(tmp_path) -> None:
    found = expressions()
    assert len(found) >= 30
    rules = {
        "groups": [
            {
                "name": "parse",
                "rules": [
                    {"record": f"esteira:parse_check_{index}", "expr": expression}
                    for index, expression in enumerate(found.values())
                ],
            }
        ]
    }
    path = tmp_path / "all.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(found)} rules found" in checked.stdout


@pytest.mark.integration
def test_every_expression_returns_data_from_the_real_stack(
    redis_url, tmp_path, esteira_processes, start_prometheus
) -> None:
    key = generate_key()
    portal_port, api_port, lost_port = free_port(), free_port(), free_port()
    ruptura_port, scraper_port = free_port(), free_port()
    esteira_processes("portal", ["portal", "--port", str(portal_port)], {}, port=portal_port)
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": seeded_database(
            f"sqlite:///{tmp_path / 'promql.db'}", orders=300, products=60
        ),
        "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
        "ESTEIRA_API_KEYS": f"ops:{key_digest(key)}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        # Every kind of event the dashboards show: browsers recycled after each job, scrapes
        # deferred by the portal's rate limit.
        "ESTEIRA_BROWSER_MAX_JOBS": "1",
        "ESTEIRA_SCRAPE_RATE_PER_MINUTE": "60",
        "ESTEIRA_SCRAPE_RATE_BURST": "1",
    }
    for pool, port in (("ruptura", ruptura_port), ("scraper", scraper_port)):
        esteira_processes(
            f"{pool}-worker",
            ["worker", pool],
            {**env, "ESTEIRA_METRICS_PORT": str(port)},
            port=port,
        )
    esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
    lost = {**env, "ESTEIRA_REDIS_URL": "redis://127.0.0.1:1/0", "ESTEIRA_AUTH_DISABLED": "true"}
    esteira_processes("api-without-redis", ["api", "--port", str(lost_port)], lost, port=lost_port)
    prometheus = start_prometheus(
        {
            "esteira-api": [f"127.0.0.1:{api_port}", f"127.0.0.1:{lost_port}"],
            "esteira-ruptura-worker": [f"127.0.0.1:{ruptura_port}"],
            "esteira-scraper-worker": [f"127.0.0.1:{scraper_port}"],
        },
        rule_files=[RULES],
        labels={"namespace": "esteira"},
    )

    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert httpx.get(f"{api.base_url}/api/v1/queues").status_code == 401  # a refusal
    orders = [o["num_pedido"] for o in api.get("/api/v1/ruptura/orders?limit=100").json()]
    session = api.post("/api/v1/ruptura/sessions", json={"pedidos": orders}).json()
    tasks = [
        api.post(f"/api/v1/scraping/os/{number}").json()["task_id"]
        for number in (FIRST_OS + 1, FIRST_OS + 2, 999999)
    ]
    inline = httpx.post(
        f"http://127.0.0.1:{lost_port}/api/v1/ruptura/sessions", json={"pedidos": orders[:5]}
    )
    assert inline.status_code == 200 and inline.json()["mode"] == "inline"
    deadline = time.monotonic() + 120
    while (
        not all(
            api.get(f"/api/v1/scraping/tasks/{task}").json()["status"] in ("success", "failed")
            for task in tasks
        )
        or not api.get(session["status_url"]).json()["done"]
    ):
        assert time.monotonic() < deadline, "the load did not finish"
        time.sleep(0.5)

    # Every expression must return at least one series (scrapes run every second). An alert's
    # expression is empty while all is well, so each series it selects must exist instead.
    missing = {}
    for where, expression in expressions().items():
        if where.startswith(ALERT):
            for index, match in enumerate(SELECTOR.finditer(expression)):
                missing[f"{where} selector {index}"] = match.group(0)
        else:
            missing[where] = expression
    deadline = time.monotonic() + 60
    while missing:
        missing = {where: e for where, e in missing.items() if not prometheus.query(e)}
        if missing and time.monotonic() > deadline:
            pytest.fail("no data for: " + "; ".join(f"{w}: {e}" for w, e in missing.items()))
        time.sleep(1)
    api.close()
