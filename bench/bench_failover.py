"""`python -m bench failover`: the stall a client sees when Redis's primary dies under a session
and Sentinel promotes its replica. Real redis-server primary and replica, three redis-sentinel,
the gateway and one ruptura worker reaching Redis through the Sentinels; the primary SIGKILLed a
fifth of the way into a 10,000-order session.

The stall is measured as the client sees it: from the last page of the session's results that
brought new results before the kill to the first one after it. The client follows the session
with long polls, and asks again every 0.1 s while the gateway answers 503, so what is measured is
the failover, not a client's back-off. Sentinel's `down-after-milliseconds` is most of it: the
table gives the stall at 1 s (the tests' setting) and 5 s (a cautious production setting).
Every order must come back once, analysed: none lost, none twice, none in error."""

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from esteira_cli.processes import free_port
from esteira_testing.components import EsteiraProcess, RedisSentinelCluster, seeded_database

ORDERS = 10_000
KILL_AT = ORDERS // 5
# A session not done this long after its POST has lost orders (it took 3-9 s when it did not).
SESSION_DEADLINE_SECONDS = 120
# The processes' log level (their logs are kept in the bench's folder): WARNING, unless an
# investigation asks for more (ESTEIRA_BENCH_LOG_LEVEL=INFO).
LOG_LEVEL = os.environ.get("ESTEIRA_BENCH_LOG_LEVEL", "WARNING")


def _trial(workdir: Path, database_url: str, down_after_ms: int) -> dict[str, float]:
    cluster = RedisSentinelCluster(down_after_ms=down_after_ms).start()
    processes: list[EsteiraProcess] = []
    try:
        env = {
            **cluster.env,
            "ESTEIRA_REDIS_URL": "redis://127.0.0.1:1/0",  # unused: the Sentinels name the primary
            "ESTEIRA_DATABASE_URL": database_url,
            "ESTEIRA_AUTH_DISABLED": "true",
            "ESTEIRA_TENANT_RATE_PER_SECOND": "0",
            "ESTEIRA_LOG_LEVEL": LOG_LEVEL,
            "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "1",
        }
        metrics_port, api_port = free_port(), free_port()
        processes.append(
            EsteiraProcess(
                f"ruptura-{down_after_ms}",
                ["worker", "ruptura"],
                {**env, "ESTEIRA_METRICS_PORT": str(metrics_port)},
                workdir,
            ).start(metrics_port)
        )
        processes.append(
            EsteiraProcess(
                f"api-{down_after_ms}", ["api", "--port", str(api_port)], env, workdir
            ).start(api_port)
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
            while not any(
                queue["pool"] == "ruptura" and queue["workers_online"]
                for queue in client.get("/api/v1/queues").json()["queues"]
            ):
                time.sleep(0.1)
            started = client.post(
                "/api/v1/ruptura/sessions", json={"all": True, "reference_date": "2026-03-02"}
            )
            assert started.status_code == 202, started.text
            session_id = started.json()["session_id"]
            deadline = time.perf_counter() + SESSION_DEADLINE_SECONDS
            offset, last_before, first_after, killed_at = 0, 0.0, 0.0, 0.0
            seen: list[str] = []
            errors = 0
            statuses: Counter[str] = Counter()
            while True:
                response = client.get(
                    f"/api/v1/ruptura/sessions/{session_id}/results",
                    params={"offset": offset, "wait": 2},
                )
                now = time.perf_counter()
                assert now < deadline, (
                    f"the session stopped at {len(seen)} of {ORDERS} results "
                    f"(the processes' logs are in {workdir})"
                )
                if response.status_code != 200:
                    errors += response.status_code != 503 or "Retry-After" not in response.headers
                    time.sleep(0.1)
                    continue
                page = response.json()
                if page["results"]:
                    seen += [result["num_pedido"] for result in page["results"]]
                    statuses.update(result["status"] for result in page["results"])
                    if not killed_at:
                        last_before = now
                    elif not first_after:
                        first_after = now
                offset = page["next_offset"]
                if page["done"]:
                    finished = now
                    break
                if not killed_at and offset >= KILL_AT:
                    killed_at = time.perf_counter()
                    dead = cluster.kill_primary()
                    cluster.wait_for_promotion(dead.port)
                    promoted = time.perf_counter() - killed_at
        assert len(seen) == len(set(seen)) == ORDERS, "orders lost or doubled"
        # Every order of the carteira is active: each comes back analysed (not in error, and not
        # "nao_encontrado", which a judged carteira missing a lost part of it would answer).
        assert set(statuses) == {"analisado"}, f"orders not analysed: {dict(statuses)}"
        return {
            "stall": first_after - last_before,
            "promoted": promoted,
            "finished": finished - killed_at,
            "errors": errors,
        }
    finally:
        for process in reversed(processes):
            process.stop()
        cluster.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-failover-"))
    database_url = seeded_database(
        f"sqlite:///{workdir / 'failover.db'}", orders=ORDERS, products=200
    )
    trials = {down_after: _trial(workdir, database_url, down_after) for down_after in (1000, 5000)}
    print(
        "| Sentinel down-after | primary killed → replica promoted "
        "| stall (last result → first after) | kill → session done "
        "| 5xx other than 503 + Retry-After |"
    )
    print("|---:|---:|---:|---:|---:|")
    for down_after, trial in trials.items():
        print(
            f"| {down_after / 1000:g} s | {trial['promoted']:.2f} s | {trial['stall']:.2f} s "
            f"| {trial['finished']:.2f} s | {trial['errors']:g} |"
        )
    print(
        f"failover: stall {trials[1000]['stall']:.2f} s (down-after 1 s), "
        f"{trials[5000]['stall']:.2f} s (down-after 5 s), every order once"
    )


if __name__ == "__main__":
    main()
