"""The rules and the autoscaling signal, checked by promtool and evaluated by a real Prometheus
scraping a real gateway and real workers under a load this test generates. The targets carry
the labels a ServiceMonitor gives them in namespace `esteira` (job = the Service's name), so the
rules of release `esteira` (deploy/k8s/prometheus-rules.yml) select them."""

import asyncio
import subprocess
import time

import httpx
import pytest

from esteira_cli.processes import free_port
from esteira_core import fair, jobs
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_core.redis import create_redis
from esteira_core.settings import CoreSettings
from esteira_devtools import chart

RULES = chart.RULES


def test_promtool_accepts_every_rule() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


@pytest.mark.integration
def test_the_autoscaling_signal_matches_the_load(
    redis_url, tmp_path, esteira_processes, start_prometheus
) -> None:
    database_url = f"sqlite:///{tmp_path / 'metrics.db'}"
    upgrade(create_db_engine(database_url).url)
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "ESTEIRA_AUTH_DISABLED": "true",
    }
    api_port, worker_port = free_port(), free_port()
    esteira_processes("api", ["api", "--port", str(api_port)], env, port=api_port)
    esteira_processes(
        "ruptura-worker",
        ["worker", "ruptura"],
        {**env, "ESTEIRA_METRICS_PORT": str(worker_port)},
        port=worker_port,
    )

    # The load: 30 scrapes waiting for a scraper pool at zero replicas, most of them still in
    # the fair queue (a window of 3 in arq's), all of them demand.
    async def load() -> None:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        await fair.submit(
            redis,
            fair.FairQueue(jobs.Pool.SCRAPER, 3, 0.5),
            jobs.CANARY,
            [fair.Job(f"load-{i}", jobs.CanaryPayload()) for i in range(30)],
            "load",
            fair.Quota(100, "jobs", 1),
        )
        await redis.aclose()

    asyncio.run(load())
    prometheus = start_prometheus(
        {
            "esteira-api": [f"127.0.0.1:{api_port}"],
            "esteira-ruptura-worker": [f"127.0.0.1:{worker_port}"],
        },
        rule_files=[RULES],
        labels={"namespace": "esteira"},
    )
    # Both targets scraped once: the ruptura pool's demand is recorded with or without the
    # worker's capacity (a default stands in), so its presence alone says nothing of the worker.
    for job in ("esteira-api", "esteira-ruptura-worker"):
        prometheus.wait_for(f'up{{job="{job}"}} == 1', timeout=60)
    deadline = time.monotonic() + 60
    while True:
        demand = {
            r["metric"]["pool"]: float(r["value"][1])
            for r in prometheus.query("esteira:worker_demand:ratio")
        }
        if demand.get("scraper") == 10.0 and "ruptura" in demand:
            break
        assert time.monotonic() < deadline, f"no expected demand: {demand}"
        time.sleep(0.5)
    # 30 waiting / the scraper's default concurrency of 3; ruptura has a live worker, no work.
    assert demand == {"scraper": 10.0, "ruptura": 0.0}
    capacity = prometheus.query('esteira_worker_capacity{queue="arq:queue:ruptura"}')
    assert float(capacity[0]["value"][1]) == 8.0
    online = prometheus.query('esteira_workers_online{pool="ruptura"}')
    assert float(online[0]["value"][1]) == 1.0
    assert httpx.get(f"{prometheus.url}/api/v1/rules").json()["status"] == "success"
