"""Running ``smsroute serve``: options, safety checks, one worker or several, signals and drain.

``main(["--config", "smsroute.toml"])`` reads the file, refuses what is
unsafe (a non-loopback address without client keys: an open port in front
of a paid API lets anyone on the network spend the balance), builds the
service, binds, and serves until SIGTERM or SIGINT. Then it drains: stops
accepting, lets requests in flight finish for up to ``drain_seconds``,
closes caches and connections, and exits 0. A second signal exits at once.

``--workers N`` runs N processes on one port: the parent binds the port
(SO_REUSEPORT, so that each worker binds it too and the kernel spreads
connections), starts the workers, restarts one that dies, and on a signal
tells every worker to drain. Callers' qps and daily quotas live in shared
memory, so they hold across workers; answers and single-flight are shared
when ``[cache] backend = "redis"`` (SQLite shares answers only).

Exit status: 0 after a drain, 1 when the service could not run (the port is
taken), 2 for a usage or configuration error (one line on stderr, never a
traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NoReturn

from smsroute._log import get_logger
from smsroute.config import Settings, load_settings
from smsroute.errors import ConfigurationError
from smsroute.netaddr import is_loopback
from smsroute.serve.logs import configure_logging, flush_logs, flush_periodically

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "check_exposure",
    "main",
    "run_loop",
    "serve",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_PROG: Final = "smsroute serve"
_START_WAIT: Final = 60.0  # seconds the parent waits for its workers to bind
_RESTART_GAP: Final = 1.0  # seconds between restarts of a worker that died

_log = get_logger()


class _UsageError(Exception):
    """A bad command line: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``smsroute serve`` options."""
    p = _Parser(
        prog=_PROG,
        description="Serve routing decisions over HTTP (JSON) for platforms that are not Python.",
        epilog="Settings: docs/config.md. The apikey comes from the file or $SMSROUTE_APIKEY.",
    )
    p.add_argument("--config", metavar="FILE", help="settings file (TOML); default: none")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8780; 0 picks a free one)")
    p.add_argument("--workers", type=int, metavar="N", help="processes on the port (default 1)")
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="info logs one line per request (default)",
    )
    return p


def _say(message: str) -> None:
    flush_logs()  # the log lines before this one come first
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


def check_exposure(settings: Settings) -> None:
    """Raise ConfigurationError for a non-loopback address without client keys."""
    host = settings.serve.host
    if not is_loopback(host) and not settings.serve.clients:
        raise ConfigurationError(
            f"refusing to listen on {host} without client keys: anyone who can reach the port"
            " could spend the vendor balance; add [serve] client_keys or bind 127.0.0.1"
        )


def _settings(options: dict[str, Any]) -> Settings:
    """Return the settings of the file (or the defaults) with the command line's overrides."""
    path = options.get("config")
    settings = load_settings(path) if path else Settings.from_dict({})
    changes = {k: options[k] for k in ("host", "port", "workers") if options.get(k) is not None}
    if "port" in changes and not 0 <= changes["port"] <= 65535:
        raise ConfigurationError("--port: must be 0 to 65535")
    if "workers" in changes and not 1 <= changes["workers"] <= 256:
        raise ConfigurationError("--workers: must be 1 to 256")
    if changes:
        settings = settings.copy(serve=dataclasses.replace(settings.serve, **changes))
    check_exposure(settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run ``smsroute serve`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        _say(f"{exc} (see --help)")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    options = vars(args)
    try:
        import aiohttp  # noqa: F401 - only to say what is missing
    except ImportError:
        _say("needs aiohttp: pip install 'smsroute[async]'")
        return EXIT_USAGE
    try:
        settings = _settings(options)
    except ConfigurationError as exc:
        _say(str(exc))
        return EXIT_USAGE
    try:
        _preflight(settings)
    except ConfigurationError as exc:
        where = "" if settings.source == "<settings>" else f"{settings.source}: "
        _say(f"{where}{exc}")
        return EXIT_USAGE
    configure_logging(options["log_level"])
    if settings.serve.workers == 1:
        return _serve_alone(settings)
    return _supervise(settings, options)


def _uvloop(kind: str) -> Any:
    """Return the uvloop module for ``[serve] event_loop``, or None to use asyncio's loop."""
    if kind == "asyncio":
        return None
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        if kind == "uvloop":
            raise ConfigurationError(
                "[serve] event_loop: uvloop is not installed: pip install 'smsroute[serve]'"
            ) from None
        return None
    return module if hasattr(module, "run") else None  # uvloop.run() came in 0.18


def run_loop(main: Coroutine[Any, Any, int], kind: str = "auto") -> int:
    """Run ``main`` on uvloop's loop (``auto``: when installed) or asyncio's; return its result."""
    # Measured by benchmarks/serve_bench.py: a request costs 6-10% less CPU on uvloop.
    uvloop = _uvloop(kind)
    if uvloop is None:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def _preflight(settings: Settings) -> None:
    """Build what the workers will build, once, so that a bad setting stops the start here."""
    from smsroute.config import build_async_client, build_cache, build_segments

    _uvloop(settings.serve.event_loop)
    build_segments(settings)
    build_async_client(settings)  # no session until first use: nothing to close
    cache = build_cache(settings)
    close = getattr(cache, "close", None)
    if callable(close):
        close()


# -- sockets --------------------------------------------------------------------------


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (not listening yet)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# -- one worker -----------------------------------------------------------------------


async def serve(app: Any, sock: socket.socket, *, on_ready: Callable[[int], None]) -> int:
    """Serve the app on the bound ``sock`` until SIGTERM or SIGINT, then drain; return 0."""
    from aiohttp import web

    from smsroute.serve.app import SERVICE

    service = app[SERVICE]
    s = service.settings.serve
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # the service logs its own structured access events
        shutdown_timeout=s.drain_seconds,
        # An idle keep-alive connection, and a request head that trickles in,
        # are cut off after idle_timeout: the timer is not reset by partial data.
        keepalive_timeout=s.idle_timeout,
        max_line_size=s.max_header,
        max_field_size=s.max_header,
    )
    loop = asyncio.get_running_loop()
    if service.settings.cache.backend != "memory":
        # AsyncRouter runs a blocking cache's calls in the loop's default executor
        # (min(32, cpus + 4) threads); a fleet wait holds a thread while it polls,
        # so under hundreds of concurrent misses that pool, not Redis, is the limit.
        loop.set_default_executor(
            ThreadPoolExecutor(service.settings.cache.threads, thread_name_prefix="smsroute-cache")
        )
    await runner.setup()
    flusher = asyncio.ensure_future(flush_periodically())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        on_ready(sock.getsockname()[1])
        await stop.wait()
        service.draining = True
        _log.info("serve.draining", in_flight=service.http.in_flight, seconds=s.drain_seconds)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _exit_now)
    finally:
        await runner.cleanup()  # stops accepting, waits for requests in flight, closes the service
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
    return EXIT_OK


def _exit_now() -> None:
    _say("second signal: exiting without waiting for requests in flight")
    os._exit(EXIT_FAILED)


def _serve_alone(settings: Settings) -> int:
    from smsroute.serve.app import create_app
    from smsroute.serve.service import Service

    host, port = settings.serve.host, settings.serve.port
    try:
        sock = _bind(host, port, reuse_port=False)
    except OSError as exc:
        _say(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return EXIT_FAILED
    try:
        app = create_app(service=Service(settings))
    except ConfigurationError as exc:  # a Kannel gateway that is not an smsc-id, say
        sock.close()
        where = "" if settings.source == "<settings>" else f"{settings.source}: "
        _say(f"{where}{exc}")
        return EXIT_USAGE

    def ready(bound: int) -> None:
        _say(f"listening on {_url(host, bound)} (1 worker, pid {os.getpid()})")

    status = run_loop(serve(app, sock, on_ready=ready), settings.serve.event_loop)
    _say("stopped")
    return status


# -- several workers ------------------------------------------------------------------


def _worker(
    options: dict[str, Any],
    port: int,
    index: int,
    count: int,
    shared: tuple[Any, Any],
    events: Any,
) -> None:
    """Run one worker process: the parent's options, the parent's port, shared limits."""
    # The parent tells workers when to stop (SIGTERM); a Ctrl-C in the terminal
    # reaches the whole process group, and would otherwise count twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(options["log_level"], worker=index + 1)
    try:
        from smsroute.serve.app import create_app
        from smsroute.serve.callers import Limits
        from smsroute.serve.service import Service

        settings = _settings({**options, "port": port})
        slots, lock = shared
        limits = Limits(len(settings.serve.clients), slots=slots, lock=lock)
        service = Service(
            settings,
            limits=limits,
            worker=index,
            workers=count,
            metrics_dir=options.get("metrics_dir"),
        )
        app = create_app(service=service)
        sock = _bind(settings.serve.host, port, reuse_port=True)
    except (ConfigurationError, OSError) as exc:
        events.put(("error", index, str(exc)))
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_FAILED)
    run_loop(
        serve(app, sock, on_ready=lambda _port: events.put(("ready", index, ""))),
        settings.serve.event_loop,
    )


def _supervise(settings: Settings, options: dict[str, Any]) -> int:
    from smsroute.serve.callers import Limits

    count = settings.serve.workers
    host = settings.serve.host
    try:
        # Held, never listening, for the supervisor's lifetime: it fixes the port
        # (0 picks one) that the workers then bind with SO_REUSEPORT.
        holder = _bind(host, settings.serve.port, reuse_port=True)
    except OSError as exc:
        _say(f"cannot listen on {host}:{settings.serve.port}: {exc.strerror or exc}")
        return EXIT_FAILED
    port = holder.getsockname()[1]
    if settings.cache.backend == "memory":
        # Each worker then pays for its own answers: say so once, at the start.
        _log.warning("serve.unshared_cache", workers=count, hint="[cache] backend = redis")
    ctx = multiprocessing.get_context("spawn")
    shared = Limits.shared_slots(ctx, len(settings.serve.clients))
    # Where the workers share their /metrics figures (serve.fleet); the
    # supervisor's, removed with it.
    metrics_dir = tempfile.mkdtemp(prefix="smsroute-metrics-")
    options = {**options, "metrics_dir": metrics_dir}
    events = ctx.Queue()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            # The workers' metrics directory goes too: os._exit skips finally.
            shutil.rmtree(metrics_dir, ignore_errors=True)
            _exit_now()
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start(i: int) -> Any:
        p = ctx.Process(
            target=_worker,
            args=(options, port, i, count, shared, events),
            name=f"smsroute-serve-{i + 1}",
        )
        p.start()
        return p

    workers = {i: start(i) for i in range(count)}
    try:
        status = _await_ready(workers, events, count, lambda: stopping)
        if status is not None:
            return status
        _say(f"listening on {_url(host, port)} ({count} workers, pid {os.getpid()})")
        last_start = dict.fromkeys(workers, time.monotonic())
        while not stopping:
            time.sleep(0.2)
            for i, p in list(workers.items()):
                if p.is_alive() or stopping:
                    continue
                if time.monotonic() - last_start[i] < _RESTART_GAP:
                    continue
                _say(f"worker {i + 1} exited with status {p.exitcode}; restarting it")
                workers[i] = start(i)
                last_start[i] = time.monotonic()
        _say(f"draining {count} workers (up to {settings.serve.drain_seconds:g} s)")
        _stop_all(workers, settings.serve.drain_seconds + 5.0)
        _say("stopped")
        return EXIT_OK
    finally:
        _stop_all(workers, 1.0)
        holder.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _await_ready(
    workers: dict[int, Any], events: Any, count: int, stopping: Callable[[], bool]
) -> int | None:
    """Wait until every worker listens; return an exit status when one cannot start."""
    ready: set[int] = set()
    deadline = time.monotonic() + _START_WAIT
    while len(ready) < count:
        if stopping():
            return EXIT_OK
        try:
            kind, index, message = events.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() > deadline:
                _say(f"workers did not start within {_START_WAIT:g} s")
                return EXIT_FAILED
            dead = [i for i, p in workers.items() if not p.is_alive() and i not in ready]
            if dead:
                _say(f"worker {dead[0] + 1} exited while starting")
                return EXIT_FAILED
            continue
        if kind == "error":
            _say(message)
            return EXIT_USAGE
        ready.add(index)
    return None


def _stop_all(workers: dict[int, Any], wait: float) -> None:
    for p in workers.values():
        if p.is_alive():
            p.terminate()  # SIGTERM: each worker drains
    end = time.monotonic() + wait
    for p in workers.values():
        p.join(max(0.0, end - time.monotonic()))
    for p in workers.values():
        if p.is_alive():
            p.kill()
            p.join(1.0)
