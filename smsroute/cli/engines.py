"""The bulk run's engines: asyncio (aiohttp) when the async extra is installed, else threads."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any, Final

from smsroute.batch import Engine, ThreadEngine
from smsroute.cli.args import positive_float, positive_int
from smsroute.cli.common import EXIT_USAGE, CommandError
from smsroute.config import Settings, build_async_client, build_client
from smsroute.core.policy import RoutingPolicy
from smsroute.routing import Router

if TYPE_CHECKING:
    from smsroute.aio.engine import LoopEngine
    from smsroute.aio.router import AsyncRouter

__all__ = [
    "ASYNC_CONCURRENCY",
    "THREAD_CONCURRENCY",
    "add_engine_arguments",
    "default_concurrency",
    "loop_engine",
    "make_engine",
    "use_async",
]

ASYNC_CONCURRENCY: Final = 64  # fills a 10 ms vendor several times over, on one core
THREAD_CONCURRENCY: Final = 8


def use_async(args: argparse.Namespace) -> bool:
    """Return True when the run's lookups go through the asyncio engine."""
    if args.engine == "threads":
        return False
    try:
        import aiohttp  # noqa: F401 - only asks whether the async extra is installed
    except ImportError:
        if args.engine == "async":
            raise CommandError(
                "--engine async needs aiohttp: pip install 'smsroute[async]'", EXIT_USAGE
            ) from None
        return False
    return True


def add_engine_arguments(group: Any) -> None:
    """Add --engine, --concurrency and --qps to an argument group."""
    group.add_argument(
        "--engine",
        choices=("auto", "async", "threads"),
        default="auto",
        help="how lookups run: asyncio (aiohttp, the async extra; a fraction of the CPU "
        "per lookup) or threads (requests); auto: async when aiohttp is installed",
    )
    group.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help=f"lookups in flight (default: {ASYNC_CONCURRENCY} async, "
        f"{THREAD_CONCURRENCY} threads)",
    )
    group.add_argument(
        "--qps",
        type=positive_float,
        default=None,
        help="at most this many vendor queries a second (the vendor's per-key limit; "
        "default: [vendor] qps of --config); a lookup that cannot get a turn within its "
        "deadline falls back",
    )


def default_concurrency(args: argparse.Namespace) -> int:
    """Return the lookups in flight when --concurrency is not given: high enough for the engine."""
    return ASYNC_CONCURRENCY if use_async(args) else THREAD_CONCURRENCY


def make_engine(
    args: argparse.Namespace,
    settings: Settings,
    policy: RoutingPolicy,
    router_kwargs: dict[str, Any],
    concurrency: int,
    stack: contextlib.ExitStack,
) -> tuple[Engine, Any]:
    """Return the run's engine and its router (for stats); closing is registered on ``stack``.

    The vendor client is the one of ``settings`` (``[vendor]`` with the flags over it).
    """
    if use_async(args):
        engine = loop_engine(settings, policy, router_kwargs, concurrency)
        return engine, engine.router
    client = build_client(settings, pool_maxsize=max(32, concurrency))
    stack.callback(client.close)
    router = Router(client, policy, **router_kwargs)
    return ThreadEngine(router.route, concurrency), router


def loop_engine(
    settings: Settings,
    policy: RoutingPolicy,
    router_kwargs: dict[str, Any],
    concurrency: int,
) -> LoopEngine:
    """Return a LoopEngine whose AsyncRouter and AsyncCarrierClient live on its loop."""
    from smsroute.aio.engine import LoopEngine
    from smsroute.aio.router import AsyncRouter

    async def make() -> AsyncRouter:
        client = build_async_client(settings, max_connections=max(32, concurrency))
        return AsyncRouter(client, policy, **router_kwargs)

    async def close(router: AsyncRouter) -> None:
        await router.client.aclose()

    return LoopEngine(make, concurrency, aclose=close)
