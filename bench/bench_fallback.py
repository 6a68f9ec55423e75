"""`make bench-fallback`: how fast the gateway falls back to inline work when Redis dies, and
how fast it returns to the queue when Redis is back. Real redis-server, gateway and ruptura
worker; requests every 50 ms as a client would send them; Redis killed with SIGKILL."""

import signal
import tempfile
import time
from pathlib import Path

import httpx

from esteira_testing.components import LocalStack, seeded_database

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
    database_url = seeded_database(f"sqlite:///{workdir / 'fallback.db'}", orders=200, products=60)
    errors = 0
    with LocalStack(
        workdir, database_url, ESTEIRA_LOG_LEVEL="WARNING", ESTEIRA_HEARTBEAT_INTERVAL_SECONDS="1"
    ) as stack:
        stack.worker("ruptura")
        redis = stack.redis
        with httpx.Client(base_url=stack.gateway(), timeout=30) as client:
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
