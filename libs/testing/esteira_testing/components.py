"""Real components for tests, each on a free loopback port in its own temporary folder.

Every class here starts a real server from the machine's Debian packages and always removes what
it created when stopped. Fault injection (stop, SIGKILL, restart on the same port) is built in.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import redis

from esteira_cli.processes import ManagedProcess, free_port, redis_server_argv
from esteira_core.db import create_db_engine
from esteira_core.db.migrate import upgrade
from esteira_scraping.processes import descendants


class RedisServer:
    """redis-server on 127.0.0.1; `kill()` and `restart()` keep the port so clients reconnect.

    With `tls=True` it speaks only TLS, with a certificate signed by a CA made for it
    (`ca_file`); with a `password` it requires AUTH; with `persist=True` it keeps an append-only
    file (fsynced every second, as `esteira up` does), so a restart after `kill()` finds the
    data again; `extra` are more redis-server flags (e.g. `--replicaof`)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
        persist: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="esteira-redis-"))
        self.process: ManagedProcess | None = None
        self.tls = tls
        self.password = password
        self.persist = persist
        self.extra = list(extra)
        self._tls_args = self._certificates() if tls else []

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=2,
            ssl=self.tls,
            ssl_ca_certs=str(self.ca_file) if self.tls else None,
        )

    def _certificates(self) -> list[str]:
        """A CA and a server certificate for 127.0.0.1 signed by it; redis-server's TLS flags."""
        ca_key, ca, key, csr, cert = (
            str(self.dir / name) for name in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt")
        )
        for argv in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=esteira-test-ca"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", "/dev/stdin"],
        ):  # fmt: skip
            subprocess.run(
                ["openssl", *argv],
                input=b"subjectAltName=IP:127.0.0.1\n",
                capture_output=True,
                check=True,
            )
        flags = {"port": "0", "tls-port": str(self.port), "tls-cert-file": cert,
                 "tls-key-file": key, "tls-ca-cert-file": ca, "tls-auth-clients": "no"}  # fmt: skip
        return [item for name, value in flags.items() for item in (f"--{name}", value)]

    def start(self) -> RedisServer:
        argv = redis_server_argv(self.port, self.dir, persist=self.persist)
        argv += self._tls_args  # a later --port 0 turns the plain port off
        if self.password:
            argv += ["--requirepass", self.password]
        argv += self.extra
        self.process = ManagedProcess("redis", argv, stdout=subprocess.DEVNULL).start()
        self.process.wait_for_port(self.port, timeout=20)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted Redis."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ReplicationRelay:
    """A TCP relay a replica reaches its primary through, on 127.0.0.1. `hold()` stops passing
    the primary's stream on, as a replica lagging behind sees it: whatever the primary
    acknowledges from then on never reaches the replica if the primary dies."""

    def __init__(self, primary_port: int) -> None:
        self.primary_port = primary_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.held = threading.Event()
        threading.Thread(target=self._accept, name="replication-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                replica, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                primary = socket.create_connection(("127.0.0.1", self.primary_port))
            except OSError:
                replica.close()  # the primary is gone
                continue
            for source, sink, from_primary in ((replica, primary, False), (primary, replica, True)):
                threading.Thread(
                    target=self._pass, args=(source, sink, from_primary), daemon=True
                ).start()

    def _pass(self, source: socket.socket, sink: socket.socket, from_primary: bool) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if not (from_primary and self.held.is_set()):
                    sink.sendall(data)
        for end in (source, sink):
            with suppress(OSError):
                end.close()

    def hold(self) -> None:
        self.held.set()

    def close(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()


class RedisSentinelCluster:
    """A Redis primary, one replica of it and three Sentinels watching them (quorum 2), all on
    127.0.0.1: what a replicated Redis with automatic failover is, for tests.

    The Sentinels are quick on purpose (a primary is down after `down_after_ms` without an
    answer), so a failover takes seconds, not the half minute of Sentinel's defaults.
    With `relay`, the replica replicates through a ReplicationRelay (`hold_replication()`: the
    primary's writes from then on are lost when it dies, as a lagging replica loses them)."""

    MASTER_NAME = "esteira"

    def __init__(
        self,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        sentinel_password: str | None = None,
        relay: bool = False,
    ) -> None:
        self.primary = RedisServer()
        self.relay = ReplicationRelay(self.primary.port) if relay else None
        upstream = self.relay.port if self.relay else self.primary.port
        self.replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(upstream)])
        self.servers = [self.primary, self.replica]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = Path(tempfile.mkdtemp(prefix="esteira-sentinel-"))
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_password = sentinel_password
        self.sentinel_processes: list[ManagedProcess] = []

    @property
    def sentinels(self) -> str:
        """ESTEIRA_REDIS_SENTINELS for this cluster."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def env(self) -> dict[str, str]:
        """What an Esteira process needs to reach this cluster through its Sentinels."""
        env = {
            "ESTEIRA_REDIS_SENTINELS": self.sentinels,
            "ESTEIRA_REDIS_MASTER_NAME": self.MASTER_NAME,
        }
        if self.sentinel_password:
            env["ESTEIRA_REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.sentinel_ports[index],
            password=self.sentinel_password,
            socket_timeout=2,
            decode_responses=True,
        )

    def _sentinel_argv(self, port: int) -> list[str]:
        config = self.dir / f"sentinel-{port}.conf"  # Sentinel rewrites it: its own copy
        name = self.MASTER_NAME
        config.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f"dir {self.dir}",
                    "loglevel warning",
                    f"sentinel monitor {name} 127.0.0.1 {self.primary.port} 2",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                    *self._password_lines(),
                    "",
                ]
            )
        )
        if shutil.which("redis-sentinel"):
            return ["redis-sentinel", str(config)]
        return ["redis-server", str(config), "--sentinel"]

    def _password_lines(self) -> list[str]:
        """The Sentinels' own password, which each also gives the others."""
        if not self.sentinel_password:
            return []
        return [
            f"requirepass {self.sentinel_password}",
            f"sentinel sentinel-pass {self.sentinel_password}",
        ]

    def start(self) -> RedisSentinelCluster:
        self.primary.start()
        self.replica.start()
        self._wait(lambda: self._role(self.replica)["master_link_status"] == "up")
        for port in self.sentinel_ports:
            process = ManagedProcess(
                "redis-sentinel", self._sentinel_argv(port), stdout=subprocess.DEVNULL
            ).start()
            self.sentinel_processes.append(process)
            process.wait_for_port(port, timeout=20)

        def watching() -> bool:  # every Sentinel knows the replica and the two others
            for index in range(len(self.sentinel_ports)):
                state = self.sentinel_client(index).sentinel_master(self.MASTER_NAME)  # type: ignore[no-untyped-call]
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
            return True

        self._wait(watching)
        return self

    @staticmethod
    def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready within {timeout:g} s")
            time.sleep(0.1)

    @staticmethod
    def _role(server: RedisServer) -> dict[str, Any]:
        info: dict[str, Any] = server.client().info("replication")  # type: ignore[assignment]
        return info

    def master_port(self) -> int:
        """The primary's port, as the Sentinels see it now."""
        for index in range(len(self.sentinel_ports)):
            with suppress(redis.RedisError, OSError):
                client = self.sentinel_client(index)
                address = client.sentinel_get_master_addr_by_name(self.MASTER_NAME)  # type: ignore[no-untyped-call]
                if address:
                    return int(address[1])
        raise RuntimeError("no Sentinel answers")

    def current_primary(self) -> RedisServer:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def hold_replication(self) -> None:
        """The replica receives nothing more from the primary (a cluster made with `relay`)."""
        if self.relay is None:
            raise RuntimeError("a cluster without a relay cannot hold its replication")
        self.relay.hold()

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (as a crashed node); returns it (dead)."""
        primary = self.current_primary()
        primary.kill()
        return primary

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> RedisServer:
        """Waits until the Sentinels name another primary and it accepts writes; returns it."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            server = next(server for server in self.servers if server.port == port)
            return bool(self._role(server)["role"] == "master")

        self._wait(promoted, timeout)
        return self.current_primary()

    def close(self) -> None:
        for process in self.sentinel_processes:
            process.stop(grace=5)
        for server in self.servers:
            server.close()
        if self.relay is not None:
            self.relay.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (run `make setup`)")
    return Path(candidates[-1]).parent


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl), as the postgres user when run as root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bindir = _postgres_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="esteira-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.superuser = self.user or pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *argv: str) -> None:
        subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            check=True,
            user=self.user,
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.superuser, "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), or None when not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        dsn = f"host=127.0.0.1 port={self.port} user={self.superuser} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def freeze(self) -> None:
        """SIGSTOPs the server and every backend, as a paused VM or a stalled disk leaves it:
        connections stay open, new ones are accepted by the kernel, nothing is answered. The
        postmaster first (a stopped one forks no new backend), then its processes, until none
        is left (one may have been forked just before)."""
        postmaster = self._postmaster()
        os.kill(postmaster, signal.SIGSTOP)
        stopped: set[int] = set()
        while fresh := set(descendants(postmaster)) - stopped:
            for pid in fresh:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= fresh

    def thaw(self) -> None:
        """Its backends first, then the postmaster (which then forks again)."""
        postmaster = self._postmaster()
        for pid in descendants(postmaster):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)

    def _postmaster(self) -> int:
        postmaster = self.pid()
        assert postmaster is not None, "PostgreSQL is not running"
        return postmaster

    def stop(self) -> None:
        """Stops the server as a crash would (immediate: no checkpoint, clients cut off)."""
        if self.pid() is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PrometheusServer:
    """Prometheus scraping the given targets every second, with optional rule files; `labels`
    are added to every target (e.g. the `namespace` a cluster's service discovery would add)."""

    def __init__(
        self,
        targets: dict[str, Sequence[str]],
        rule_files: Sequence[Path] = (),
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="esteira-prometheus-"))
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": list(hosts), "labels": dict(labels or {})}],
                }
                for job, hosts in targets.items()
            ],
        }
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML: no YAML writer needed
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        argv = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = ManagedProcess("prometheus", argv, stdout=subprocess.DEVNULL).start()
        self.process.wait_for_port(self.port, timeout=30)
        # Its port opens before its storage is: until /-/ready says so, queries answer 503.
        deadline = time.monotonic() + 30
        while httpx.get(f"{self.url}/-/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("Prometheus never became ready")
            time.sleep(0.1)
        return self

    def query(self, expression: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def wait_for(self, expression: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Polls until the expression returns data; raises with the last answer otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if result or time.monotonic() > deadline:
                if not result:
                    raise TimeoutError(f"no data for {expression!r} within {timeout:g} s")
                return result
            time.sleep(0.5)

    def close(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5)
        shutil.rmtree(self.dir, ignore_errors=True)


class EsteiraProcess:
    """One Esteira process (`esteira api`, `esteira worker ...`, `esteira portal`) for a test."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        wrapper: Sequence[str] = (),
    ) -> None:
        """`wrapper` runs the command under another (e.g. setpriv, to drop a capability)."""
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        argv = [*wrapper, sys.executable, "-m", "esteira_cli.main", *args]
        self.worker = bool(args) and args[0] == "worker"
        # Whatever a test starts listens on loopback only (a worker's port defaults to every
        # address, for Prometheus in a cluster).
        loopback = {"ESTEIRA_METRICS_HOST": "127.0.0.1"}
        self.process = ManagedProcess(
            name, argv, env={**os.environ, **loopback, **env}, stdout=self.log
        )
        self.metrics_port: int | None = None

    def start(self, port: int | None = None, timeout: float = 60) -> EsteiraProcess:
        """Starts it; with a `port`, returns once it listens there and, for a worker (whose
        probe port opens before it reaches Redis), once it serves its queue."""
        self.process.start()
        if port is not None:
            self.process.wait_for_port(port, timeout)
            if self.worker:
                self._wait_ready(port, timeout)
        return self

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
            if not self.process.running() or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.process.name} never served its queue")
            time.sleep(0.05)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()

    def stop(self, grace: float = 15) -> int | None:
        code = self.process.stop(grace)
        self.log.close()
        return code


class LocalStack:
    """A redis-server and Esteira processes around one database: what benchmarks and whole-stack
    tests start. Used as a context manager, it stops everything it started."""

    def __init__(self, workdir: Path, database_url: str, **env: str) -> None:
        self.workdir = workdir
        self.redis = RedisServer().start()
        self.env = {
            "ESTEIRA_REDIS_URL": self.redis.url,
            "ESTEIRA_DATABASE_URL": database_url,
            # Gateways serve without keys unless the stack is given ESTEIRA_API_KEYS, and
            # without a tenant rate limit unless given one (what is measured is something else).
            "ESTEIRA_AUTH_DISABLED": "false" if "ESTEIRA_API_KEYS" in env else "true",
            "ESTEIRA_TENANT_RATE_PER_SECOND": "0",
            **env,
        }
        self.processes: list[EsteiraProcess] = []

    def worker(
        self, pool: str, name: str | None = None, wrapper: Sequence[str] = (), **env: str
    ) -> EsteiraProcess:
        port = free_port()
        worker_env = {**self.env, **env, "ESTEIRA_METRICS_PORT": str(port)}
        process = EsteiraProcess(
            name or f"{pool}-worker-{len(self.processes)}",
            ["worker", pool],
            worker_env,
            self.workdir,
            wrapper,
        ).start(port)
        process.metrics_port = port
        self.processes.append(process)
        return process

    def gateway(self, **env: str) -> str:
        """Starts `esteira api`; returns its base URL."""
        port = free_port()
        process = EsteiraProcess(
            f"api-{len(self.processes)}",
            ["api", "--port", str(port)],
            {**self.env, **env},
            self.workdir,
        ).start(port)
        self.processes.append(process)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.redis.close()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextmanager
def tables_locked(
    database_url: str, *tables: str, mode: str = "ACCESS EXCLUSIVE"
) -> Iterator[None]:
    """Someone else's transaction (a DBA's, a migration, a nightly load) holds tables of a
    PostgreSQL database in `mode` until the block ends: ACCESS EXCLUSIVE, whoever reads or
    writes them waits; EXCLUSIVE, only writers do."""
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN {mode} MODE")
            yield
    finally:
        engine.dispose()


def seeded_database(database_url: str, orders: int, products: int, seed: int = 5) -> str:
    """Migrates the database and fills it with a demo carteira; returns the URL."""
    from esteira_ruptura.demo import DemoSpec, seed_demo

    engine = create_db_engine(database_url)
    try:
        upgrade(engine.url)
        seed_demo(engine, DemoSpec(orders=orders, products=products, seed=seed), replace=True)
    finally:
        engine.dispose()
    return database_url
