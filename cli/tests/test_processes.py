import os
import sys
import time
from pathlib import Path

import pytest

from esteira_cli.processes import ManagedProcess, _own_share, free_port, port_is_open

# A parent that starts a grandchild and ignores SIGTERM: stop() must still leave nothing behind.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored() -> None:
    process = ManagedProcess("stubborn", [sys.executable, "-c", STUBBORN]).start()
    assert process.process is not None and process.process.stdout is not None
    grandchild = int(process.process.stdout.readline())
    assert _alive(grandchild)
    process.stop(grace=0.5)
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert not _alive(process.pid)


def test_wait_for_port_reports_a_child_that_died() -> None:
    process = ManagedProcess("dies", [sys.executable, "-c", "raise SystemExit(3)"]).start()
    try:
        process.wait_for_port(free_port(), timeout=10)
    except RuntimeError as exc:
        assert "exited" in str(exc)
    else:
        raise AssertionError("wait_for_port should have failed")
    assert process.stop() == 3


def test_free_port_is_free() -> None:
    port = free_port()
    assert not port_is_open(port)
    assert os.getpid() > 0


def test_free_ports_in_a_row_are_distinct_and_outside_the_ephemeral_range() -> None:
    # A port chosen and not bound yet is never chosen again (the gateway and a worker's
    # metrics server once got the same one), nor is a connection's own end.
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    if not _own_share():
        pytest.skip("the kernel leaves too few ports outside its ephemeral range")
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert not [port for port in ports if low <= port <= high]


def test_two_xdist_workers_never_hand_out_the_same_port(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    handed_out = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        handed_out[worker] = {free_port() for _ in range(50)}
    assert max(handed_out["gw0"]) < min(handed_out["gw1"])
