"""A real Redis Cluster for the integration tests: 3 masters + 3 replicas on loopback ports.

Imported by the test modules as ``redis_cluster`` (pytest puts ``tests/`` on
the path). Six ``redis-server`` processes of the same binary, joined by
``redis-cli --cluster create``; no persistence; every step bounded in time,
every process killed by :meth:`LocalCluster.close`.

::

    with LocalCluster() as cluster:   # starts, creates, waits for cluster_state:ok
        cluster.url                   # "redis://127.0.0.1:<port of a master>"
        cluster.masters()             # ports of the current masters
        cluster.kill(port)            # SIGKILL one node, as a crash would
        cluster.wait_ok()             # a replica took over its slots
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
from redis_server import find_redis_server, ping

CLI_HINT = "redis-cli not found: the Redis Cluster tests need it (apt-get install redis-tools)"
NODE_TIMEOUT_MS = 1000  # a killed master is failed over in about two of these


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Return ``count`` ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    # Below 55536, so that the bus port is a port at all.
    while len(ports) < count:
        port = random.randint(20000, 50000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def find_redis_cli() -> str | None:
    """Return a redis-cli (or valkey-cli) on PATH, or None."""
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


class LocalCluster:
    """Six cluster-enabled redis-server processes on 127.0.0.1, one replica per master."""

    def __init__(self, executable: str | None = None, cli: str | None = None) -> None:
        exe = executable or find_redis_server()
        tool = cli or find_redis_cli()
        if exe is None or tool is None:
            raise RuntimeError(CLI_HINT)
        self.executable, self.cli = exe, tool
        self.ports = free_cluster_ports(6)
        self._dir = Path(tempfile.mkdtemp(prefix="smsroute-cluster-"))
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Return the URL of one live node (any node will do for a cluster client)."""
        return f"redis://127.0.0.1:{self.live()[0]}"

    def live(self) -> list[int]:
        """Return the ports of the nodes still running."""
        return [p for p, proc in self._procs.items() if proc.poll() is None]

    def node(self, port: int) -> redis.Redis:
        """Return a plain client of one node (the caller closes it)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)

    def _ask(self, port: int, *command: str) -> object:
        client = self.node(port)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def state_ok(self, port: int) -> bool:
        """Return True when the node on ``port`` reports ``cluster_state:ok``."""
        reply = self._ask(port, "CLUSTER", "INFO")
        if isinstance(reply, dict):
            return reply.get("cluster_state") == "ok"
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return "cluster_state:ok" in text

    def start(self, timeout: float = 20.0) -> LocalCluster:
        """Start the six nodes, create the cluster and wait until every node says ok."""
        end = time.monotonic() + timeout
        for port in self.ports:
            self._procs[port] = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(self._dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    # A replica must have synced before its master dies, or it
                    # may not take over: no 5 s wait before the first sync.
                    "--repl-diskless-sync-delay",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._dir),
                    "--logfile",
                    str(self._dir / f"{port}.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for port in self.ports:
            while not ping(port):
                if self._procs[port].poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"cluster node {port} did not start")
                time.sleep(0.01)
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=max(1.0, end - time.monotonic()),
            check=True,
        )
        self.wait_ok(max(1.0, end - time.monotonic()))
        while len(self.synced_replicas()) < 3:
            if time.monotonic() > end:
                raise RuntimeError("cluster replicas did not sync")
            time.sleep(0.05)
        return self

    def synced_replicas(self) -> list[int]:
        """Return the ports of the live replicas whose link to their master is up."""
        out = []
        for port in self.live():
            with contextlib.suppress(redis.RedisError):
                role = self._ask(port, "ROLE")
                replica = isinstance(role, list) and role[0] in (b"slave", "slave")
                if replica and role[3] in (b"connected", "connected"):  # type: ignore[index]
                    out.append(port)
        return out

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and three masters."""
        end = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError):
                if all(self.state_ok(p) for p in self.live()) and len(self.masters()) == 3:
                    return
            if time.monotonic() > end:
                raise RuntimeError(f"cluster not ok within {timeout}s")
            time.sleep(0.05)

    def masters(self) -> list[int]:
        """Return the ports of the live nodes that are masters now."""
        out = []
        for port in self.live():
            with contextlib.suppress(redis.RedisError):
                role = self._ask(port, "ROLE")
                if isinstance(role, list) and role[0] in (b"master", "master"):
                    out.append(port)
        return out

    def dbsize(self, port: int) -> int:
        """Return how many keys the node on ``port`` holds."""
        reply = self._ask(port, "DBSIZE")
        assert isinstance(reply, int)
        return reply

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``, as a crash would."""
        proc = self._procs[port]
        if proc.poll() is None:
            proc.kill()
        proc.wait(5.0)

    def close(self) -> None:
        """Kill every node and remove the directory."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
