"""`make bench-fallback`: how fast the gateway falls back to inline work when Redis dies, and
how fast it returns to the queue when Redis is back. Real redis-server, gateway and ruptura
worker; requests every 50 ms as a client would send them; Redis killed with SIGKILL."""

import signal
import tempfile
import time
from pathlib import Path

import httpx

from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_core.processes import free_port
from esteira_ruptura.demo import DemoSpec, seed_demo
from esteira_testing.components import EsteiraProcess, RedisServer

BODY = {"pedidos": [str(100001 + i) for i in range(20)], "reference_date": "2026-03-02"}


def _until_inline(client: httpx.Client, since: float) -> tuple[float, int]:
    """Posts sessions until one is answered inline; returns (seconds since `since`, 5xx seen)."""
    errors = 0
    while True:
        response = client.post("/api/v1/ruptura/sessions", json=BODY)
        errors += response.status_code >= 500
        if response.status_code == 200 and response.json()["mode"] == "inline":
            return time.perf_counter() - since, errors
        time.sleep(0.05)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="esteira-bench-fallback-"))
    database_url = f"sqlite:///{workdir / 'fallback.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine.url)
    seed_demo(engine, DemoSpec(orders=200, products=60, seed=5))
    engine.dispose()
    redis = RedisServer().start()
    env = {
        "ESTEIRA_REDIS_URL": redis.url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_LOG_LEVEL": "WARNING",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    worker_port, api_port = free_port(), free_port()
    processes = [
        EsteiraProcess(
            "worker",
            ["worker", "ruptura"],
            {**env, "ESTEIRA_METRICS_PORT": str(worker_port)},
            workdir,
        ).start(worker_port),
        EsteiraProcess("api", ["api", "--port", str(api_port)], env, workdir).start(api_port),
    ]
    errors = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
            assert client.post("/api/v1/ruptura/sessions", json=BODY).status_code == 202
            killed = time.perf_counter()
            redis.kill()
            first_inline, seen = _until_inline(client, killed)
            errors += seen
            redis.start()  # at once: the breaker's wait is part of what is measured
            returned = time.perf_counter()
            while True:
                queues = client.get("/api/v1/queues").json()["queues"]
                if next(q for q in queues if q["pool"] == "ruptura")["mode"] == "queue":
                    back_to_queue = time.perf_counter() - returned
                    break
                time.sleep(0.05)
            response = client.post("/api/v1/ruptura/sessions", json=BODY)
            errors += response.status_code >= 500
            queued_again = response.status_code == 202
            # A Redis that hangs instead of dying: every call waits for its timeout (1 s).
            assert redis.process is not None
            frozen = time.perf_counter()
            redis.process.signal_group(signal.SIGSTOP)
            first_inline_frozen, seen = _until_inline(client, frozen)
            errors += seen
            redis.process.signal_group(signal.SIGCONT)
    finally:
        for process in processes:
            process.stop()
        redis.close()

    print("| measure | value |")
    print("|---|---:|")
    print(f"| Redis killed → first inline answer | {first_inline:.2f} s |")
    print(f"| Redis back → queue mode | {back_to_queue:.2f} s |")
    print(f"| Redis frozen (SIGSTOP) → first inline answer | {first_inline_frozen:.2f} s |")
    print(f"| next session queued again | {'yes' if queued_again else 'NO'} |")
    print(f"| 5xx answers during both outages | {errors} |")
    print(
        f"fallback: first inline answer {first_inline:.2f} s after redis death; "
        f"queue mode {back_to_queue:.2f} s after redis return"
    )


if __name__ == "__main__":
    main()
