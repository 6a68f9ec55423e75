"""`esteira up`, as `make run` starts it: every process comes up, /readyz says ready, /metrics
shows esteira_ metrics, every URL of the banner answers, a killed worker is started again, and
Ctrl-C leaves no process behind."""

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


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:
        return []


class Stack:
    """`esteira up` as a subprocess on free ports, its output in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.ports = {
            name: free_port() for name in ("api", "portal", "redis", "ruptura", "scraper")
        }
        self.tmp_path = tmp_path
        self.log_path = tmp_path / "up.log"
        argv = [
            sys.executable,
            "-m",
            "esteira_cli.main",
            "up",
            "--api-port",
            str(self.ports["api"]),
            "--portal-port",
            str(self.ports["portal"]),
            "--redis-port",
            str(self.ports["redis"]),
            "--ruptura-metrics-port",
            str(self.ports["ruptura"]),
            "--scraper-metrics-port",
            str(self.ports["scraper"]),
            "--data-dir",
            str(tmp_path / "var"),
            "--demo-orders",
            "100",
        ]
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
        )
        self.api = f"http://127.0.0.1:{self.ports['api']}"

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"never printed {text!r}:\n{self.output()}"
            time.sleep(0.2)

    def worker_pid(self, pool: str) -> int | None:
        for pid in _children(self.process.pid):
            argv = _cmdline(pid)
            if argv[-2:] == ["worker", pool] and "esteira_cli.main" in argv:
                return pid
        return None

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


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
    stack = Stack(tmp_path)
    ports, api = stack.ports, stack.api
    descendants: set[int] = set()
    try:
        stack.wait_for_output("Ctrl-C stops everything")
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
        descendants = _children(stack.process.pid)
        assert len(descendants) >= 5  # redis, api, two workers, portal

        os.kill(stack.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert stack.process.wait(60) == 0
    finally:
        stack.close()
    output = stack.output()
    assert "esteira | stopped" in output
    leftovers = [pid for pid in descendants if _alive(pid)]
    assert leftovers == [], output
    assert not any(port_is_open(port) for port in ports.values())


def test_the_banner_leads_with_the_operator_page_and_a_killed_worker_comes_back(tmp_path) -> None:
    stack = Stack(tmp_path)
    try:
        stack.wait_for_output("Ctrl-C stops everything")
        banner = [line for line in stack.output().splitlines() if line.startswith("esteira |")]
        urls = [word for line in banner for word in line.split() if word.startswith("http")]
        assert urls[0] == f"{stack.api}/ui", banner
        for url in urls:
            assert httpx.get(url.rstrip(",;)")).status_code == 200, url
        docs = httpx.get(f"{stack.api}/docs").text
        assert "cdn" not in docs and "/static-docs/swagger-ui-bundle.js" in docs

        first = stack.worker_pid("ruptura")
        assert first is not None, stack.output()
        os.kill(first, signal.SIGKILL)
        stack.wait_for_output("ruptura-worker exited (code -9); restarting it in 1 s")
        stack.wait_for_output("ruptura-worker restarted (pid")
        again = stack.worker_pid("ruptura")
        assert again is not None and again != first
        deadline = time.monotonic() + 60
        while not port_is_open(stack.ports["ruptura"]):  # the new worker serves its metrics
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.2)
        assert httpx.get(f"{stack.api}/readyz").json()["status"] == "ready"
        assert stack.process.poll() is None and "stopping the stack" not in stack.output()
        os.kill(stack.process.pid, signal.SIGINT)
        assert stack.process.wait(60) == 0
    finally:
        stack.close()


def test_a_sigkilled_stack_leaves_no_process_behind(tmp_path) -> None:
    """`kill -9` of `esteira up` itself (a closed terminal, an OOM kill): its Redis, gateway,
    workers and portal stop with it instead of running on, reparented, holding the ports."""
    stack = Stack(tmp_path)
    try:
        stack.wait_for_output("Ctrl-C stops everything")
        services = _children(stack.process.pid)
        assert len(services) >= 5
        os.kill(stack.process.pid, signal.SIGKILL)  # the supervisor alone, not its group
        stack.process.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in services):
            assert time.monotonic() < deadline, [p for p in services if _alive(p)]
            time.sleep(0.2)
    finally:
        stack.close()
    assert not any(port_is_open(port) for port in stack.ports.values())
