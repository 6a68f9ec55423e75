"""`esteira up`: the whole local stack in the foreground.

redis-server (data under the project's data folder), a migrated and seeded SQLite database, the
gateway, one worker of each pool and the demo portal; their output prefixed by process name.
Like a small cluster, a worker that dies is started again after a back-off (1 s, doubling up to
30 s, back to 1 s once it has run a minute), and the rest of the stack carries on: killing a
worker is how one tries the gateway's fallback. The gateway, Redis or the portal dying stops the
stack. Ctrl-C stops every process group, leaving nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from esteira_cli.processes import ManagedProcess, port_is_open, redis_server_argv

RESTART_FIRST_DELAY_SECONDS = 1.0
RESTART_MAX_DELAY_SECONDS = 30.0
# A worker that ran this long before dying is not crash-looping: its next restart is quick again.
RESTART_STABLE_SECONDS = 60.0


@dataclass
class Restarts:
    """When a restartable process may be started again, and how long the next wait is."""

    delay: float = RESTART_FIRST_DELAY_SECONDS
    count: int = 0
    started_at: float = field(default_factory=time.monotonic)
    due_at: float | None = None

    def died(self, now: float) -> float:
        """Records a death; returns the back-off before the restart."""
        if now - self.started_at >= RESTART_STABLE_SECONDS:
            self.delay = RESTART_FIRST_DELAY_SECONDS
        wait = self.delay
        self.delay = min(self.delay * 2, RESTART_MAX_DELAY_SECONDS)
        self.due_at = now + wait
        return wait

    def restarted(self, now: float) -> None:
        self.count += 1
        self.started_at = now
        self.due_at = None


@dataclass(frozen=True)
class StackConfig:
    api_port: int = 8000
    portal_port: int = 8100
    redis_port: int = 6379
    data_dir: str = "var"
    demo_orders: int = 2000
    ruptura_metrics_port: int = 9101
    scraper_metrics_port: int = 9102

    @property
    def worker_metrics_ports(self) -> dict[str, int]:
        return {"ruptura": self.ruptura_metrics_port, "scraper": self.scraper_metrics_port}


def _pump(name: str, stream: IO[bytes], width: int) -> None:
    out = sys.stdout.buffer
    prefix = f"{name:<{width}} | ".encode()
    for line in iter(stream.readline, b""):
        out.write(prefix + line)
        out.flush()


def _say(message: str) -> None:
    sys.stdout.write(f"esteira | {message}\n")
    sys.stdout.flush()


def _esteira(*args: str) -> list[str]:
    return [sys.executable, "-m", "esteira_cli.main", *args]


def _leashed(argv: list[str]) -> list[str]:
    """A service that gets SIGTERM when the stack's supervisor dies, however it dies (a SIGKILL
    included): a killed `esteira up` leaves no Redis, gateway or worker behind."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _start(service: ManagedProcess, width: int) -> None:
    service.start()
    assert service.process is not None and service.process.stdout is not None
    threading.Thread(
        target=_pump, args=(service.name, service.process.stdout, width), daemon=True
    ).start()


def _banner(config: StackConfig, data_dir: Path) -> list[str]:
    """What to open, the operator page first; only URLs that answer."""
    api = f"http://127.0.0.1:{config.api_port}"
    workers = ", ".join(
        f"{pool} http://127.0.0.1:{port}/metrics"
        for pool, port in config.worker_metrics_ports.items()
    )
    return [
        f"operator page  {api}/ui",
        f"API docs       {api}/docs  (ReDoc: {api}/redoc)",
        f"readiness      {api}/readyz",
        f"metrics        {api}/metrics; workers: {workers}",
        f"demo portal    http://127.0.0.1:{config.portal_port}/login  (demo / demo)",
        f"redis          redis://127.0.0.1:{config.redis_port}/0, data in {data_dir}",
        "a worker that dies is restarted; Ctrl-C stops everything",
    ]


def _local_metrics(port: int) -> dict[str, str]:
    """A local worker's /metrics on loopback only (its default is every address, for a pod)."""
    return {"ESTEIRA_METRICS_PORT": str(port), "ESTEIRA_METRICS_HOST": "127.0.0.1"}


def run_stack(config: StackConfig) -> int:
    data_dir = Path(config.data_dir).resolve()
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    ports = {
        "redis": config.redis_port,
        "api": config.api_port,
        "portal": config.portal_port,
        **{f"{pool}-worker metrics": port for pool, port in config.worker_metrics_ports.items()},
    }
    taken = [f"{name} ({port})" for name, port in ports.items() if port_is_open(port)]
    if taken:
        _say("ports already in use: " + ", ".join(taken) + "; stop what holds them or pick others")
        return 2

    env = {
        **os.environ,
        "ESTEIRA_REDIS_URL": f"redis://127.0.0.1:{config.redis_port}/0",
        "ESTEIRA_DATABASE_URL": f"sqlite:///{data_dir / 'esteira.db'}",
        "ESTEIRA_LOG_FORMAT": os.environ.get("ESTEIRA_LOG_FORMAT", "text"),
        "ESTEIRA_PORTAL_URL": f"http://127.0.0.1:{config.portal_port}",
        "PYTHONUNBUFFERED": "1",
    }
    if not os.environ.get("ESTEIRA_API_KEYS"):
        env["ESTEIRA_AUTH_DISABLED"] = "true"
        _say(
            "AUTHENTICATION IS OFF: no ESTEIRA_API_KEYS, so this local stack serves anyone as "
            "tenant 'anonymous'. Never expose it; set ESTEIRA_API_KEYS to turn keys on."
        )
    steps = [
        ("migrate", _esteira("db", "upgrade")),
        ("seed", _esteira("seed-demo", "--orders", str(config.demo_orders), "--if-empty")),
    ]
    for name, argv in steps:
        step = ManagedProcess(name, argv, env=env, stdout=None).start()
        if step.wait() != 0:
            _say(f"{name} failed; nothing was started")
            return 1

    services = [
        ManagedProcess(
            "redis",
            _leashed(redis_server_argv(config.redis_port, data_dir / "redis", persist=True)),
            env=env,
        ),
        ManagedProcess("api", _leashed(_esteira("api", "--port", str(config.api_port))), env=env),
        ManagedProcess(
            "ruptura-worker",
            _leashed(_esteira("worker", "ruptura")),
            env={**env, **_local_metrics(config.worker_metrics_ports["ruptura"])},
        ),
        ManagedProcess(
            "scraper-worker",
            _leashed(_esteira("worker", "scraper")),
            env={**env, **_local_metrics(config.worker_metrics_ports["scraper"])},
        ),
        ManagedProcess(
            "portal", _leashed(_esteira("portal", "--port", str(config.portal_port))), env=env
        ),
    ]
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    width = max(len(service.name) for service in services)
    exit_code = 0
    restartable = {"ruptura-worker": Restarts(), "scraper-worker": Restarts()}
    try:
        for service in services:
            _start(service, width)
        for service, port in (
            (services[0], config.redis_port),
            (services[1], config.api_port),
            (services[4], config.portal_port),
        ):
            service.wait_for_port(port, timeout=60)
        for line in _banner(config, data_dir):
            _say(line)
        while not stopping.wait(0.5):
            now = time.monotonic()
            dead = [service for service in services if not service.running()]
            fatal = [service.name for service in dead if service.name not in restartable]
            if fatal:
                _say(f"{', '.join(fatal)} exited; stopping the stack")
                exit_code = 1
                break
            for service in dead:
                restarts = restartable[service.name]
                if restarts.due_at is None:
                    assert service.process is not None
                    code = service.process.returncode
                    # Whatever it started (a worker's browsers) goes with it.
                    service.signal_group(signal.SIGKILL)
                    wait = restarts.died(now)
                    _say(f"{service.name} exited (code {code}); restarting it in {wait:g} s")
                elif now >= restarts.due_at:
                    _start(service, width)
                    restarts.restarted(now)
                    _say(f"{service.name} restarted (pid {service.pid}, restart {restarts.count})")
    except (RuntimeError, TimeoutError) as exc:
        _say(f"start-up failed: {exc}")
        exit_code = 1
    finally:
        _say("stopping")
        # Stop in reverse: the gateway and workers finish before Redis goes away.
        for service in reversed(services):
            service.stop(grace=10)
        _say("stopped")
        time.sleep(0.1)
    return exit_code
