"""The images, run as a cluster runs them: non-root, read-only root filesystem with a /tmp
tmpfs, every capability dropped, no new privileges. Gateway, ruptura worker and scraper worker
containers against a real PostgreSQL, Redis and the demo portal on this machine: a ruptura
session and an OS lookup go through them end to end.

Opt-in, because it needs images already built (`make images`) and a container engine: set
ESTEIRA_TEST_IMAGES to their prefix and tag, e.g. `ghcr.io/esteira/esteira-{service}:abc1234`.
"""

import os
import shutil
import subprocess
import time

import httpx
import pytest

from esteira_api.apikeys import generate_key, key_digest
from esteira_cli.processes import free_port
from esteira_portal.records import FIRST_OS
from esteira_testing.components import seeded_database

IMAGES = os.environ.get("ESTEIRA_TEST_IMAGES", "")


def _engine() -> str | None:
    """docker when its daemon answers, else podman (a docker client alone is no engine)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return docker
    return shutil.which("podman")


ENGINE = _engine() if IMAGES else None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (IMAGES and ENGINE), reason="set ESTEIRA_TEST_IMAGES to built images (make images)"
    ),
]
HARDENED = [
    "--read-only",
    "--tmpfs=/tmp:rw,size=512m",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
    "--network=host",
]


def _image(service: str) -> str:
    return IMAGES.format(service=service)


@pytest.fixture
def containers():
    started: list[str] = []

    def run(service: str, env: dict[str, str], *command: str, detach: bool = True) -> str:
        flags = [f"--env={name}={value}" for name, value in env.items()]
        if ENGINE and "podman" in ENGINE:
            flags.append("--runtime=runc")
        argv = [ENGINE, "run", "--rm", *HARDENED, *flags]
        if not detach:
            done = subprocess.run(
                [*argv, _image(service), *command], capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout
        name = f"esteira-test-{service}-{len(started)}-{os.getpid()}"
        subprocess.run(
            [*argv, "--detach", f"--name={name}", _image(service), *command],
            check=True,
            capture_output=True,
            timeout=120,
        )
        started.append(name)
        return name

    yield run
    for name in started:
        logs = subprocess.run([ENGINE, "logs", name], capture_output=True, text=True)
        print(f"----- {name} -----\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")  # noqa: T201
        subprocess.run([ENGINE, "rm", "--force", name], capture_output=True)


def test_the_images_serve_a_session_and_a_lookup(
    containers, redis_url, postgres_server, esteira_processes
) -> None:
    database_url = seeded_database(postgres_server.create_database(), orders=100, products=30)
    portal_port, api_port = free_port(), free_port()
    esteira_processes("portal", ["portal", "--port", str(portal_port)], {}, port=portal_port)
    key = generate_key()
    env = {
        "ESTEIRA_REDIS_URL": redis_url,
        "ESTEIRA_DATABASE_URL": database_url,
        "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{portal_port}",
        "ESTEIRA_API_KEYS": f"ops:{key_digest(key)}",
        "ESTEIRA_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    containers("api", env, "python", "-m", "esteira_core.db.migrate", detach=False)
    containers("ruptura-worker", {**env, "ESTEIRA_METRICS_PORT": str(free_port())})
    containers("scraper-worker", {**env, "ESTEIRA_METRICS_PORT": str(free_port())})
    containers("api", {**env, "ESTEIRA_API_PORT": str(api_port)})
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            queues = {q["pool"]: q for q in api.get("/api/v1/queues").json()["queues"]}
            if all(q["workers_online"] >= 1 for q in queues.values()):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the containers did not come up"
        time.sleep(1)
    assert api.get("/readyz").json()["status"] == "ready"

    orders = [o["num_pedido"] for o in api.get("/api/v1/ruptura/orders?limit=40").json()]
    session = api.post("/api/v1/ruptura/sessions", json={"pedidos": orders}).json()
    task_id = api.post(f"/api/v1/scraping/os/{FIRST_OS + 7}").json()["task_id"]
    while True:
        status = api.get(session["status_url"]).json()
        task = api.get(f"/api/v1/scraping/tasks/{task_id}").json()
        if status["done"] and task["status"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline + 120, (status, task)
        time.sleep(0.5)
    results = api.get(session["results_url"]).json()["results"]
    assert sorted(r["num_pedido"] for r in results) == sorted(orders)
    assert task["status"] == "success", task
    assert task["result"]["data"]["numero_os"] == str(FIRST_OS + 7)
