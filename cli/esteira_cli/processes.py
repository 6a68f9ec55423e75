"""Child processes that are always cleaned up: the local stack (`esteira up`) and the test plugin
supervise their processes with this; nothing in a service image does.

Each child runs in its own session (process group), so stopping it also stops whatever it
started (uvicorn's workers, a worker's Chromium tree), and a Ctrl-C in the terminal reaches
only the supervisor, which then stops the children in order.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import closing, suppress
from pathlib import Path
from typing import IO

# Ports for the servers tests and benchmarks start: outside the kernel's ephemeral range (from
# 20000 up), where no connection's own end and no `bind(0)` lands between the moment a port is
# chosen and the moment its server binds it (in a CI run, a scraper's metrics server once took
# the port just chosen for the gateway, and the gateway's readiness check saw its port open).
_SERVER_PORTS_FROM = 20_000
_MIN_SHARE = 200  # fewer outside the ephemeral range: any free port, as the kernel gives one
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 65_535  # no /proc: the widest range a system uses


def _own_share() -> list[range]:
    """This pytest-xdist worker's share of the server ports (all of them outside xdist), so two
    workers never hand out the same port; empty when the kernel leaves too few outside its
    ephemeral range."""
    low, high = _ephemeral_range()
    outside = [
        range(_SERVER_PORTS_FROM, low),
        range(max(high + 1, _SERVER_PORTS_FROM), 65_536),
    ]
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    share = sum(len(ports) for ports in outside) // count
    if share < _MIN_SHARE:
        return []
    wanted = range(index * share, (index + 1) * share)  # positions among the outside ports
    picked, offset = [], 0
    for ports in outside:
        part = ports[max(wanted.start - offset, 0) : max(wanted.stop - offset, 0)]
        if part:
            picked.append(part)
        offset += len(ports)
    return picked


def _bindable(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _kernel_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now and that this process has not
    handed out before: servers started one after another never share one, even before the
    first of them binds."""
    share = _own_share()
    total = sum(len(part) for part in share)
    start = random.randrange(total) if total else 0
    for step in range(total):
        port = _port_at(share, (start + step) % total)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    if total:
        raise RuntimeError(f"no free port left in {share}")
    while (port := _kernel_port()) in _handed_out:
        pass
    _handed_out.add(port)
    return port


def _port_at(share: list[range], position: int) -> int:
    for part in share:
        if position < len(part):
            return part[position]
        position -= len(part)
    raise IndexError(position)


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ManagedProcess:
    """One child process in its own process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stdout = stdout
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def start(self) -> ManagedProcess:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=subprocess.STDOUT if self.stdout is not None else None,
            start_new_session=True,
            user=self.user,
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        """Blocks until the child listens on `port`; raises if it dies or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited before listening on port {port}")
            if port_is_open(port):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on port {port} within {timeout:g} s")

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the child to finish on its own; returns its exit code."""
        assert self.process is not None, f"{self.name} is not started"
        return self.process.wait(timeout)

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL whatever of the group is left after `grace` seconds."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # The leader may be gone while its children (a browser, a uvicorn worker) are not.
        self.signal_group(signal.SIGKILL)
        code = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def redis_server_argv(port: int, data_dir: Path, *, persist: bool) -> list[str]:
    """redis-server bound to loopback, its data under `data_dir`, no system service involved.

    `persist`: an append-only file fsynced every second, so a crash (SIGKILL, OOM) loses at
    most the last second of writes and a restart on the same folder finds the queues, sessions
    and tasks again; otherwise nothing is written to disk (throwaway test servers)."""
    durability = (
        ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        if persist
        else ["--appendonly", "no", "--save", ""]
    )
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        *durability,
        "--loglevel",
        "warning",
    ]
