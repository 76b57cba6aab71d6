"""smsroute serve under load, on 127.0.0.1: hits against /healthz, cold misses, a vendor outage.

::

    python benchmarks/serve_bench.py                  # about two minutes
    python benchmarks/serve_bench.py --quick          # a few seconds per figure
    python benchmarks/serve_bench.py --json out.json --uvloop /path/to/site-packages

Figures, each measured side by side in the same run:

1. **Hit vs /healthz**: requests/s, p50, p99 of a cache hit on ``/v1/route``
   and on drop-in ``/carrier`` against ``/healthz`` on the same server (the
   floor: aiohttp plus the service's middleware), rounds alternated, medians
   taken; at 1 and 2 workers. Aim: a hit at >= 0.7 of /healthz.
2. **Cold misses**: 500 concurrent callers ask for numbers nobody asked
   before (each number by several callers at once) with the fake vendor at
   10 ms; queries paid / distinct numbers. Aim 1.00. At 1 worker; at 2
   workers with the memory cache (each worker pays for its own answers) and,
   when a redis-server/valkey-server is found, with ``[cache] backend =
   "redis"`` (shared answers and single-flight).
3. **Vendor down**: the vendor answers HTTP 500, then hangs; mixed hot and
   cold numbers on both APIs; non-200 answers. Aim 0.

The fake vendor is ``python -m smsroute.testing.aio_server`` in a child
process; the service is ``python -m smsroute.serve`` in another; the load
generator is a small HTTP/1.1 keep-alive client on raw asyncio streams in
this process, so that it costs less per request than the server it loads.
``--uvloop DIR`` also runs figure 1 at one worker with ``[serve] event_loop =
"uvloop"`` (``DIR`` holds an installed uvloop, e.g. ``pip install --target
DIR uvloop``); the other variants run with ``event_loop = "asyncio"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENT_KEY = "bench-client-key-0123456789"


# -- children --------------------------------------------------------------------------


class Vendor:
    """The fake vendor in a child process (smsroute.testing.aio_server), driven over stdin."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smsroute.testing.aio_server",
                "--port",
                "0",
                "--balance",
                str(10**12),
                "--latency",
                str(latency),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def control(self, **command: Any) -> dict[str, Any]:
        """Send one control line; return the figures it answers."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return reply

    def close(self) -> None:
        """Stop the child."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Serve:
    """``python -m smsroute.serve`` in a child process, on a free port."""

    def __init__(
        self,
        vendor: Vendor,
        workdir: Path,
        *,
        workers: int = 1,
        cache: str = "",
        access_log: bool = False,
        uvloop: str | None = None,
    ) -> None:
        config = workdir / f"serve-{workers}-{time.monotonic_ns()}.toml"
        loop = "uvloop" if uvloop else "asyncio"
        config.write_text(
            f'[vendor]\napikey = "test-apikey"\nbase_url = "{vendor.url}"\n'
            f"[serve]\nport = 0\nbalance_interval = 0\ndrain_seconds = 2\n"
            f"access_log = {'true' if access_log else 'false'}\n"
            f'event_loop = "{loop}"\nclient_keys = ["{CLIENT_KEY}"]\n{cache}\n',
            encoding="utf-8",
        )
        config.chmod(0o600)
        self.log = (workdir / f"serve-{time.monotonic_ns()}.log").open("w+")
        env = _env()
        if uvloop:  # a directory holding an installed uvloop
            env["PYTHONPATH"] = f"{uvloop}{os.pathsep}{env['PYTHONPATH']}"
        args = ["--config", str(config), "--workers", str(workers)]
        args += ["--log-level", "info" if access_log else "warning"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsroute.serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            self.log.seek(0)
            for line in self.log:
                if "listening on http://127.0.0.1:" in line:
                    return int(line.split("127.0.0.1:")[1].split()[0])
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"smsroute serve exited: {self.log.read()}")
            time.sleep(0.05)
        raise RuntimeError("smsroute serve did not start")

    def cpu(self) -> float:
        """Return the CPU seconds the service's processes (workers included) used so far."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            pids += [int(p) for p in children.split()]
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        """SIGTERM (drain) and wait."""
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + rest if rest else "")
    return env


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """Yield the URL of a throwaway redis-server (or valkey-server), or None without one."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from redis_server import RedisServer, find_redis_server
    except ImportError:
        yield None
        return
    if find_redis_server() is None:
        yield None
        return
    with RedisServer() as server:
        yield server.url


# -- the load generator ----------------------------------------------------------------


class Conn:
    """One HTTP/1.1 keep-alive connection: send prepared request bytes, read one answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        """Connect to 127.0.0.1:port with TCP_NODELAY."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def ask(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; return the status and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        at = head.lower().find(b"content-length:")
        length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


def get(path: str) -> bytes:
    """Return the bytes of a keep-alive GET with the client key."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\r\n"
    ).encode()


async def load(
    port: int, make: Callable[[int], bytes], *, connections: int, seconds: float
) -> dict[str, Any]:
    """Keep ``connections`` requests in flight for ``seconds``; return rps, p50, p99, statuses."""
    conns = [await Conn.open(port) for _ in range(connections)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = iter(range(10**12))
    started = time.perf_counter()
    end = started + seconds

    async def run(conn: Conn) -> None:
        clock = time.perf_counter
        while clock() < end:
            request = make(next(counter))
            t0 = clock()
            status, _ = await conn.ask(request)
            latencies.append(clock() - t0)
            statuses[status] += 1

    await asyncio.gather(*(run(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return _summary(latencies, elapsed, statuses)


async def burst(port: int, requests: list[bytes], *, callers: int) -> dict[str, Any]:
    """Send ``requests`` over ``callers`` connections at once; return timings and statuses."""
    conns = [await Conn.open(port) for _ in range(callers)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    bodies: list[bytes] = []
    queue = iter(requests)
    started = time.perf_counter()

    async def run(conn: Conn) -> None:
        for request in queue:
            t0 = time.perf_counter()
            status, body = await conn.ask(request)
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1
            bodies.append(body)

    await asyncio.gather(*(run(c) for c in conns))
    out = _summary(latencies, time.perf_counter() - started, statuses)
    out["bodies"] = bodies
    for c in conns:
        c.close()
    return out


def _summary(latencies: list[float], elapsed: float, statuses: Counter[int]) -> dict[str, Any]:
    ordered = sorted(latencies)
    n = len(ordered)
    return {
        "requests": n,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": ordered[n // 2] * 1000 if n else None,
        "p99_ms": ordered[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "statuses": dict(statuses),
    }


def number(i: int, head: str = "139") -> str:
    """Return a valid mobile number of a regular segment, distinct for each ``i``."""
    return f"{head}{i:08d}"


# -- the figures -----------------------------------------------------------------------


async def _warm(port: int, numbers: list[str]) -> None:
    conn = await Conn.open(port)
    for n in numbers:
        status, _ = await conn.ask(get(f"/v1/route?mobile={n}"))
        assert status == 200
    conn.close()


def figure_hits(
    vendor: Vendor, workdir: Path, variants: list[dict[str, Any]], *, quick: bool
) -> list[dict[str, Any]]:
    """Figure 1: a cache hit on /v1/route and /carrier against /healthz, same server.

    Every variant's server runs for the whole figure and rounds go round all
    of them, so that variants (1 or 2 workers, access log, uvloop) are
    compared over the same minutes of a shared machine; each hit/healthz
    ratio is taken within one round, the median over rounds reported.
    """
    servers = [Serve(vendor, workdir, **v) for v in variants]
    hot = [number(i, "138") for i in range(1000)]
    endpoints: dict[str, Callable[[int], bytes]] = {
        "healthz": lambda i: get("/healthz"),
        "route_hit": lambda i: get(f"/v1/route?mobile={hot[i % 1000]}"),
        "carrier_hit": lambda i: get(f"/carrier?apikey={CLIENT_KEY}&mobile={hot[i % 1000]}"),
    }
    rounds, seconds = (2, 1.0) if quick else (9, 1.5)
    runs: list[dict[str, list[dict[str, Any]]]] = [{n: [] for n in endpoints} for _ in variants]
    try:
        for server in servers:
            asyncio.run(_warm(server.port, hot))
            # Warm-up, also of every worker's own cache: 32 connections reach all of them.
            for make in endpoints.values():
                asyncio.run(load(server.port, make, connections=32, seconds=0.5))
        for _ in range(rounds):
            for server, run in zip(servers, runs, strict=True):
                for name, make in endpoints.items():
                    before = server.cpu()
                    result = asyncio.run(load(server.port, make, connections=32, seconds=seconds))
                    result["cpu_us"] = (server.cpu() - before) / result["requests"] * 1e6
                    run[name].append(result)
    finally:
        for server in servers:
            server.close()
    out = []
    for variant, run in zip(variants, runs, strict=True):
        row: dict[str, Any] = {"workers": 1, **variant}
        for name, results in run.items():
            row[name] = {
                "rps": statistics.median(r["rps"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "rounds_rps": [round(r["rps"]) for r in results],
                "cpu_us": statistics.median(r["cpu_us"] for r in results),
                "non_200": sum(
                    sum(v for k, v in r["statuses"].items() if k != 200) for r in results
                ),
            }
        for name in ("route_hit", "carrier_hit"):
            pairs = list(zip(run[name], run["healthz"], strict=True))
            row[f"{name}_ratio"] = statistics.median(h["rps"] / b["rps"] for h, b in pairs)
            # The server's CPU per request: the throughput it would reach when it
            # alone is the bottleneck, far steadier than req/s on a shared machine.
            row[f"{name}_cpu_ratio"] = statistics.median(
                b["cpu_us"] / h["cpu_us"] for h, b in pairs
            )
        out.append(row)
    return out


def figure_cold(
    vendor: Vendor,
    workdir: Path,
    *,
    workers: int,
    quick: bool,
    cache: str = "",
    deadline: float = 0.5,
    label: str,
) -> dict[str, Any]:
    """Figure 2: 500 concurrent callers on cold numbers; queries paid / distinct numbers."""
    vendor.control(latency=0.01)
    extra = f"{cache}\n[routing]\ndeadline = {deadline}\n"
    server = Serve(vendor, workdir, workers=workers, cache=extra)
    try:
        distinct, repeats = (300, 3) if quick else (2000, 3)
        base = random.randrange(10**7)  # numbers this run never asked before, also in Redis
        numbers = [number(base + i, "186") for i in range(distinct)] * repeats
        random.Random(0).shuffle(numbers)
        before = vendor.control()["paid"]
        result = asyncio.run(
            burst(server.port, [get(f"/v1/route?mobile={n}") for n in numbers], callers=500)
        )
        paid = vendor.control()["paid"] - before
        answers = [json.loads(b) for b in result.pop("bodies")]
        sources = Counter(a["source"] for a in answers)
        reasons = Counter((a["reason"] or "").partition(":")[0] for a in answers if a["reason"])
    finally:
        server.close()
        vendor.control(latency=0.0)
    return {
        "label": label,
        "workers": workers,
        "deadline": deadline,
        "distinct": distinct,
        "requests": len(numbers),
        "paid": paid,
        "paid_per_distinct": paid / distinct,
        "sources": dict(sources),
        "fallback_reasons": dict(reasons),
        **{k: result[k] for k in ("rps", "p50_ms", "p99_ms", "statuses")},
    }


def figure_down(vendor: Vendor, workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Figure 3: the vendor fails (HTTP 500, or hangs); count answers that are not 200."""
    out: dict[str, Any] = {}
    count = 600 if quick else 3000
    for fault in ("http500", "hang"):
        server = Serve(vendor, workdir)  # a fresh breaker for each fault
        try:
            hot = [number(i, "137") for i in range(200)]
            asyncio.run(_warm(server.port, hot))
            vendor.control(fault=fault)
            rng = random.Random(fault)
            requests = []
            for i in range(count):
                n = hot[i % len(hot)] if rng.random() < 0.5 else number(10**6 + i, "135")
                path = (
                    f"/v1/route?mobile={n}" if i % 2 else f"/carrier?apikey={CLIENT_KEY}&mobile={n}"
                )
                requests.append(get(path))
            result = asyncio.run(burst(server.port, requests, callers=200))
            codes = Counter(
                json.loads(b).get("code", 0) for b in result.pop("bodies") if b.startswith(b"{")
            )
            out[fault] = {
                "requests": count,
                "non_200": sum(v for k, v in result["statuses"].items() if k != 200),
                "carrier_nonzero_codes": sum(v for k, v in codes.items() if k != 0),
                **{k: result[k] for k in ("rps", "p50_ms", "p99_ms")},
            }
        finally:
            vendor.control(fault=None)
            server.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the figures; print them and optionally write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per figure")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--uvloop", metavar="DIR", help="also run figure 1 with uvloop from DIR")
    parser.add_argument("--only", default="1,2,3", help="figures to run, e.g. 1,3")
    args = parser.parse_args(argv)
    only = {int(x) for x in args.only.split(",")}
    figures: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "mode": "quick" if args.quick else "full",
    }
    vendor = Vendor(latency=0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if 1 in only:
                variants: list[dict[str, Any]] = [{}, {"workers": 2}, {"access_log": True}]
                if args.uvloop:
                    variants.append({"uvloop": args.uvloop})
                figures["hits"] = figure_hits(vendor, work, variants, quick=args.quick)
                for row in figures["hits"]:
                    print(_hits_line(row), flush=True)
            if 2 in only:
                cold = [
                    figure_cold(vendor, work, workers=1, quick=args.quick, label="1 worker"),
                    figure_cold(
                        vendor, work, workers=1, quick=args.quick, deadline=2.0, label="1 worker"
                    ),
                    figure_cold(
                        vendor,
                        work,
                        workers=2,
                        quick=args.quick,
                        deadline=2.0,
                        label="2 workers, memory",
                    ),
                ]
                with redis_server() as url:
                    if url is not None:
                        cold.append(
                            figure_cold(
                                vendor,
                                work,
                                workers=2,
                                quick=args.quick,
                                cache=f'[cache]\nbackend = "redis"\nurl = "{url}"\n',
                                deadline=2.0,
                                label="2 workers, redis",
                            )
                        )
                figures["cold"] = cold
                for row in cold:
                    print(
                        f"cold   {row['label']:<18} deadline {row['deadline']:g} s:"
                        f" paid/distinct {row['paid_per_distinct']:.3f}"
                        f" ({row['paid']}/{row['distinct']}), {row['rps']:.0f} req/s,"
                        f" p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms,"
                        f" sources {row['sources']}, reasons {row['fallback_reasons']}",
                        flush=True,
                    )
            if 3 in only:
                figures["down"] = figure_down(vendor, work, quick=args.quick)
                for fault, row in figures["down"].items():
                    print(
                        f"down   {fault:<8} non-200 {row['non_200']}/{row['requests']},"
                        f" /carrier code != 0: {row['carrier_nonzero_codes']},"
                        f" p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms",
                        flush=True,
                    )
    finally:
        vendor.close()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


def _hits_line(row: dict[str, Any]) -> str:
    extra = ", access log" if row.get("access_log") else ", uvloop" if row.get("uvloop") else ""
    h, r, c = row["healthz"], row["route_hit"], row["carrier_hit"]
    return (
        f"hits   {row['workers']} worker(s){extra}: /healthz {h['rps']:.0f} req/s"
        f" (p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f}, {h['cpu_us']:.0f} us CPU);"
        f" /v1/route hit {r['rps']:.0f} = {row['route_hit_ratio']:.2f}x"
        f" (p50 {r['p50_ms']:.2f}, p99 {r['p99_ms']:.2f}, {r['cpu_us']:.0f} us CPU"
        f" = {row['route_hit_cpu_ratio']:.2f}x); /carrier hit {c['rps']:.0f}"
        f" = {row['carrier_hit_ratio']:.2f}x (p50 {c['p50_ms']:.2f}, p99 {c['p99_ms']:.2f},"
        f" {c['cpu_us']:.0f} us CPU = {row['carrier_hit_cpu_ratio']:.2f}x)"
    )


if __name__ == "__main__":
    sys.exit(main())
