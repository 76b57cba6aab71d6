"""What the figures share: statistics, the figure and measure shapes, numbers, the fake vendors.

Every figure module (benchmarks/figures/) builds its result with
``figure()`` from ``check()`` and ``skipped()`` measures, deals numbers out
of ``Env.pool`` and talks to the fake vendor through ``Env.server`` (the
threaded FakeCarrierServer) or ``Env.aio_server`` (AsyncFakeCarrierServer,
for the asyncio figures), so that all figures measure the same way: variants
side by side in one run, their order ``rotated()`` round by round, medians
and nearest-rank percentiles. run.py uses ``machine()`` and ``versions()``
for the JSON's context. What only the asyncio figures share (the dripping
vendor, an async in-process client) is in aioharness.py.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import smsroute
from smsroute import Carrier, CarrierClient, CarrierInfo, __version__, segments
from smsroute.testing import FakeCarrierServer, VendorSimulator

__all__ = [
    "BENCH_APIKEY",
    "HERE",
    "AioProcessServer",
    "AioThreadServer",
    "Deliveries",
    "Env",
    "GcPauses",
    "NumberPool",
    "ProcessServer",
    "SimClient",
    "ThreadServer",
    "check",
    "child_environment",
    "ensure_open_files",
    "figure",
    "gateways",
    "machine",
    "median",
    "optional",
    "percentile",
    "redis_server",
    "rotated",
    "skipped",
    "stop_child",
    "versions",
]

HERE = Path(__file__).resolve().parent
BENCH_APIKEY = "bench-apikey"  # the asyncio fake vendor's key (a fake: nothing to hide)
_BALANCE = 10**12  # no benchmark can spend it: figure 9 alone sends 100,000+ queries


# -- statistics and the result shapes -----------------------------------------


def optional(module: str) -> Any:
    """Return an optional module, or None when it is not installed (or not written yet)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def median(values: Sequence[float]) -> float:
    """Return the median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank percentile ``q`` (0-100) of values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """Return items rotated by ``shift``: round r runs the variants in a different order."""
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def check(name: str, value: float, unit: str, op: str, target: float) -> dict[str, Any]:
    """Return one measure of a figure with its aim and whether it is met."""
    if math.isnan(value):
        met = False
    elif op == ">=":
        met = value >= target
    elif op == "<=":
        met = value <= target
    elif op == "==":
        met = value == target
    else:  # pragma: no cover - a typo in this file
        raise ValueError(op)
    return {"name": name, "value": value, "unit": unit, "aim": f"{op} {target:g}", "met": met}


def skipped(name: str, unit: str, op: str, target: float, why: str) -> dict[str, Any]:
    """Return a measure that could not be taken (value None, not met) and why."""
    return {
        "name": name,
        "value": None,
        "unit": unit,
        "aim": f"{op} {target:g}",
        "met": False,
        "skipped": why,
    }


def figure(
    title: str, measures: list[dict[str, Any]], *, note: str = "", **context: Any
) -> dict[str, Any]:
    """Return a figure: its measures, whether all are met, a one-line note and context."""
    return {
        "title": title,
        "met": all(m["met"] for m in measures),
        "measures": measures,
        "note": note,
        "context": context,
    }


class GcPauses:
    """Count the cyclic collector's runs and time its pauses while inside ``with``.

    Enter it around each timed part of a variant (it accumulates): on an
    event loop a collection stops every task at once, so a gen-2 pause lands
    on every deadline in flight. ``summary()`` gives runs, total and longest
    pause by generation.
    """

    def __init__(self) -> None:
        self._runs = [0, 0, 0]
        self._seconds = [0.0, 0.0, 0.0]
        self._longest = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = int(info["generation"])
        self._runs[generation] += 1
        self._seconds[generation] += pause
        self._longest = max(self._longest, pause)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        """Return runs and pause milliseconds by generation, and the longest pause."""
        return {
            "runs": list(self._runs),
            "ms": [round(s * 1e3, 2) for s in self._seconds],
            "longest_ms": round(self._longest * 1e3, 2),
        }


# -- numbers, gateways, an in-process client ----------------------------------


class NumberPool:
    """Distinct valid mobile numbers spread over the segment table, deterministically.

    Row ``i % R`` gets suffix ``(i // R) * 7919 + c`` modulo its suffix space:
    injective per row (7919 is prime to 10), and a number is kept only when
    its longest-prefix row is the row it was made from, so no two rows make
    the same number.
    """

    def __init__(self, kinds: tuple[str, ...] = ("regular", "virtual"), start: int = 0) -> None:
        self._table = segments.default_table()
        self._rows = [
            r
            for r in self._table.rows()
            if r.kind in kinds and r.length == 11 and r.carrier is not None
        ]
        self._i = start

    def __iter__(self) -> Iterator[str]:
        rows, lookup = self._rows, self._table.lookup
        count = len(rows)
        while True:
            i = self._i
            self._i += 1
            row = rows[i % count]
            width = 11 - len(row.prefix)
            number = f"{row.prefix}{(i // count * 7919 + 4409) % 10**width:0{width}d}"
            if lookup(number) is row:
                yield number

    def take(self, n: int) -> list[str]:
        """Return the next ``n`` numbers, never handed out before."""
        return list(itertools.islice(self, n))


class Deliveries:
    """A gateway: counts the messages it is given (thread-safe)."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def __call__(self, mobile: str, message: str) -> None:
        """Deliver one message (count it)."""
        next(self._count)

    @property
    def count(self) -> int:
        """Return how many messages were delivered."""
        return int(repr(self._count)[6:-1])


def gateways(gateway: Any) -> dict[Carrier | str, Any]:
    """Return one gateway for every operator."""
    return dict.fromkeys(Carrier, gateway)


class SimClient:
    """An in-process lookup client over VendorSimulator: no socket, no charge, counted."""

    def __init__(self) -> None:
        self._sim = VendorSimulator(balance=10**12)
        self._calls = itertools.count()

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the simulator's answer for a valid number."""
        next(self._calls)
        result = self._sim.answer_for(number)["result"]
        return CarrierInfo(
            number,
            int(result["res"]),
            result["Area"],
            Carrier.parse(result["Init_isp"]),
            Carrier.parse(result["Now_isp"]),
            result,
        )

    @property
    def calls(self) -> int:
        """Return how many lookups were made."""
        return int(repr(self._calls)[6:-1])


# -- the fake vendor ----------------------------------------------------------


def stop_child(proc: subprocess.Popen[str]) -> None:
    """Stop a fake-vendor child by closing its input; kill it if it is not gone in 10 s."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ProcessServer:
    """FakeCarrierServer in a child process (benchmarks/_server.py): its own GIL."""

    kind = "process"

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_environment(),
        )
        hello = self._read()
        self.url: str = hello["url"]
        self.apikey: str = hello["apikey"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake server process exited")
        return json.loads(line)  # type: ignore[no-any-return]

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters (paid, carrier_calls, cpu)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(changes) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Stop the child (end of its input) and wait for it."""
        stop_child(self._proc)


class ThreadServer:
    """FakeCarrierServer in this process (shares the GIL with the benchmark)."""

    kind = "thread"

    def __init__(self) -> None:
        self._server = FakeCarrierServer(balance=10**12).start()
        self.url = self._server.url
        self.apikey = self._server.apikey

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters (no separate CPU time)."""
        if "latency" in changes:
            self._server.latency = changes["latency"]
        if "fault" in changes:
            self._server.fault = changes["fault"]
        return {
            "paid": self._server.paid,
            "carrier_calls": self._server.carrier_calls,
            "cpu": None,
        }

    def close(self) -> None:
        """Stop the server."""
        self._server.stop()


def child_environment() -> dict[str, str]:
    """Return this process's environment with the imported smsroute first on PYTHONPATH.

    A fake vendor in a child process then runs the same smsroute as the
    benchmark, whatever an installed copy in the venv says.
    """
    env = dict(os.environ)
    root = str(Path(smsroute.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def ensure_open_files(count: int) -> None:
    """Raise this process's soft limit on open files to ``count`` if it is lower (and may be).

    Figure 9 holds a connection per concurrent route (1,024 at most), and the
    fake vendor in a child process, which inherits the limit, as many.
    """
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < count:
            limit = count if hard == resource.RLIM_INFINITY else min(count, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


class AioProcessServer:
    """AsyncFakeCarrierServer in a child process (``python -m smsroute.testing.aio_server``).

    The asyncio fake answers from one event loop, so at thousands of lookups
    a second it costs a fraction of the threaded server's CPU per request,
    and in its own process it does not share the client's GIL: the asyncio
    figures measure the client, not the fake. ``control()`` returns the
    child's counters, ``served`` and ``cpu`` (its process CPU seconds) among them.
    """

    kind = "process"

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smsroute.testing.aio_server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--apikey",
                BENCH_APIKEY,
                "--balance",
                str(_BALANCE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_environment(),
        )
        assert self._proc.stdout is not None
        url = self._proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the asyncio fake vendor did not start (said {url!r})")
        self.url: str = url
        self.apikey = BENCH_APIKEY

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters (served, paid, cpu ...)."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(changes) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the asyncio fake vendor exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ValueError(f"the asyncio fake vendor refused {changes}: {reply['error']}")
        return reply

    def close(self) -> None:
        """Stop the child (end of its input) and wait for it."""
        stop_child(self._proc)


class AioThreadServer:
    """AsyncFakeCarrierServer on its own loop in a thread of this process (``--server thread``).

    Its ``cpu`` is the serving thread's CPU time; the benchmark's process
    time includes it, so the client's CPU per call reads high in this mode.
    """

    kind = "thread"

    def __init__(self) -> None:
        from smsroute.testing import AsyncFakeCarrierServer

        self._server = AsyncFakeCarrierServer(apikey=BENCH_APIKEY, balance=_BALANCE)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self._server.in_thread())
        self.url: str = self._server.url
        self.apikey = BENCH_APIKEY

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters, as the child's are."""
        if "latency" in changes:
            self._server.latency = float(changes["latency"])
        if "fault" in changes:
            self._server.fault = changes["fault"]
        return {
            "served": self._server.served,
            "paid": self._server.paid,
            "carrier_calls": self._server.carrier_calls,
            "fault": self._server.fault,
            "latency": self._server.latency,
            "cpu": self._server.cpu_seconds(),
        }

    def close(self) -> None:
        """Stop the server and its loop."""
        self._stack.close()


class Env:
    """What the figures share: the number pool, the (lazily started) server, the options.

    ``quick`` says which sizes run.py chose; ``options`` holds the parsed
    command line, including the options a figure module added itself.
    """

    def __init__(
        self, server_kind: str, *, quick: bool = False, options: Mapping[str, Any] | None = None
    ) -> None:
        self.quick = quick
        self.options: Mapping[str, Any] = dict(options or {})
        self.pool = NumberPool()
        self._server_kind = server_kind
        self._server: ProcessServer | ThreadServer | None = None
        self._aio_server: AioProcessServer | AioThreadServer | None = None

    @property
    def server(self) -> ProcessServer | ThreadServer:
        """Return the fake vendor, starting it on first use."""
        if self._server is None:
            self._server = ProcessServer() if self._server_kind == "process" else ThreadServer()
        return self._server

    @property
    def aio_server(self) -> AioProcessServer | AioThreadServer:
        """Return the asyncio fake vendor, starting it on first use (a child, or ``thread``)."""
        if self._aio_server is None:
            self._aio_server = (
                AioProcessServer() if self._server_kind == "process" else AioThreadServer()
            )
        return self._aio_server

    def client(self, **kwargs: Any) -> CarrierClient:
        """Return a CarrierClient of the fake vendor."""
        return CarrierClient(self.server.apikey, base_url=self.server.url, **kwargs)

    def close(self) -> None:
        """Stop the servers that were started."""
        try:
            if self._server is not None:
                self._server.close()
        finally:
            if self._aio_server is not None:
                self._aio_server.close()


# -- redis-server --------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """Yield the URL of a throwaway redis-server on a free loopback port, or None."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="smsroute-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# -- context -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Return what the figures ran on."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": commit,
    }


def versions() -> dict[str, str | None]:
    """Return the versions of smsroute and the libraries it is compared with."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"smsroute": __version__}
    for name in ("requests", "urllib3", "aiohttp", "phone", "phonenumbers", "redis", "matplotlib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
