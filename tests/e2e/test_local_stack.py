"""`esteira up`, as `make run` starts it: every process comes up, /readyz says ready, /metrics
shows esteira_ metrics, and Ctrl-C leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from esteira_cli.processes import free_port, port_is_open

pytestmark = pytest.mark.integration


def _children(pid: int) -> set[int]:
    """Every descendant of pid, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port`, from /proc/net/tcp (state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_the_whole_stack_comes_up_and_ctrl_c_stops_every_process(tmp_path) -> None:
    ports = {name: free_port() for name in ("api", "portal", "redis", "ruptura", "scraper")}
    argv = [
        sys.executable,
        "-m",
        "esteira_cli.main",
        "up",
        "--api-port",
        str(ports["api"]),
        "--portal-port",
        str(ports["portal"]),
        "--redis-port",
        str(ports["redis"]),
        "--ruptura-metrics-port",
        str(ports["ruptura"]),
        "--scraper-metrics-port",
        str(ports["scraper"]),
        "--data-dir",
        str(tmp_path / "var"),
        "--demo-orders",
        "100",
    ]
    log = (tmp_path / "up.log").open("wb")
    stack = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
    )
    descendants: set[int] = set()
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        deadline = time.monotonic() + 90
        while not (tmp_path / "up.log").read_text().count("Ctrl-C stops everything"):
            assert stack.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "the stack did not come up in 90 s"
            time.sleep(0.2)
        ready = httpx.get(f"{api}/readyz").json()
        assert ready["status"] == "ready", ready
        metrics = httpx.get(f"{api}/metrics").text
        assert "esteira_http_request_duration_seconds" in metrics
        for pool in ("ruptura", "scraper"):
            worker_metrics = httpx.get(f"http://127.0.0.1:{ports[pool]}/metrics").text
            assert f'esteira_worker_capacity{{queue="arq:queue:{pool}"}}' in worker_metrics
            assert _listening_addresses(ports[pool]) == {"127.0.0.1"}  # not every address
        assert httpx.get(f"http://127.0.0.1:{ports['portal']}/login").status_code == 200
        assert (tmp_path / "var" / "esteira.db").exists()
        descendants = _children(stack.pid)
        assert len(descendants) >= 5  # redis, api, two workers, portal

        os.kill(stack.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert stack.wait(60) == 0
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "esteira | stopped" in output
    leftovers = [pid for pid in descendants if _alive(pid)]
    assert leftovers == [], output
    assert not any(port_is_open(port) for port in ports.values())
