"""PrometheusCollector: a scrape shows what router.stats() says, and costs the send path nothing."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import smsroute
from smsroute import Carrier, CarrierClient, CircuitBreaker, MemoryCache, Router
from smsroute.metrics import BREAKER_STATES, PrometheusCollector
from smsroute.testing import FakeCarrierServer, FakeClock
from smsroute.watcher import BalanceWatcher


@pytest.fixture
def server() -> Iterator[FakeCarrierServer]:
    """Yield a fake vendor on 127.0.0.1."""
    with FakeCarrierServer(balance=4321) as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    """Return the breaker's clock."""
    return FakeClock()


@pytest.fixture
def router(server, clock) -> Iterator[Router]:
    """Yield a router over a real client, with a FakeClock breaker."""
    with CarrierClient(
        server.apikey,
        base_url=server.url,
        retry=smsroute.default_retrying(attempts=1, sleep=lambda _s: None),
    ) as client:
        yield Router(
            client,
            {Carrier.MOBILE: "m", Carrier.UNICOM: "u", Carrier.TELECOM: "t"},
            cache=MemoryCache(),
            breaker=CircuitBreaker(threshold=2, cooldown=10, clock=clock),
        )


def traffic(router: Router, server: FakeCarrierServer) -> None:
    """Route some numbers: answers, cache hits, vendor errors, an open breaker."""
    for i in range(5):
        router.route(f"1380013{i:04d}")
    for i in range(3):
        router.route(f"1380013{i:04d}")  # hits
    router.route("13972565391")  # the document's ported number: 电信
    server.set_fault(-8)
    for i in range(5, 9):
        router.route(f"1380013{i:04d}")  # two ServiceErrors open the breaker, then circuit open
    server.set_fault(None)


def scrape(collector: PrometheusCollector) -> CollectorRegistry:
    """Return a fresh registry holding only ``collector``."""
    registry = CollectorRegistry()
    collector.register(registry)
    return registry


def test_scrape_matches_stats(router, server):
    """Every metric equals the corresponding value of router.stats()."""
    traffic(router, server)
    registry = scrape(PrometheusCollector(router))
    stats = router.stats()
    value = registry.get_sample_value

    for source, by_carrier in stats["decisions_by_carrier"].items():
        for carrier, n in by_carrier.items():
            assert value("smsroute_decisions_total", {"source": source, "carrier": carrier}) == n
    assert value("smsroute_decisions_total", {"source": "cache", "carrier": "移动"}) == 3
    assert value("smsroute_decisions_total", {"source": "upstream", "carrier": "电信"}) == 1
    for reason, n in stats["fallback_reasons"].items():
        assert value("smsroute_fallbacks_total", {"reason": reason}) == n
    assert value("smsroute_fallbacks_total", {"reason": "circuit open"}) == 2
    for code, n in stats["errors"].items():
        assert value("smsroute_errors_total", {"code": code}) == n
    assert value("smsroute_errors_total", {"code": "-8"}) == 2
    assert value("smsroute_upstream_calls_total") == stats["upstream_calls"] == 8
    assert value("smsroute_coalesced_total") == stats["coalesced"]
    assert value("smsroute_breaker_state") == BREAKER_STATES["open"]
    assert value("smsroute_breaker_opened_total") == stats["breaker_opened"] == 1
    assert value("smsroute_cache_size") == stats["cache_size"] == 6

    latency = stats["upstream_latency"]
    assert value("smsroute_upstream_latency_seconds_count") == latency["count"] == 8
    assert value("smsroute_upstream_latency_seconds_sum") == pytest.approx(latency["sum"])
    for le, n in latency["buckets"].items():
        assert value("smsroute_upstream_latency_seconds_bucket", {"le": le}) == n


def test_values_are_read_at_scrape_time(router, server):
    """The collector keeps no copy: a later scrape shows later traffic."""
    registry = scrape(PrometheusCollector(router))
    assert registry.get_sample_value("smsroute_upstream_calls_total") == 0
    router.route("13800138000")
    assert registry.get_sample_value("smsroute_upstream_calls_total") == 1
    router.route("13800138000")
    labels = {"source": "cache", "carrier": "移动"}
    assert registry.get_sample_value("smsroute_decisions_total", labels) == 1


def test_breaker_state_gauge_follows_the_breaker(router, server, clock):
    """The breaker gauge reads 0 closed, 2 open, 1 half-open after the cool-down, 0 again."""
    registry = scrape(PrometheusCollector(router))
    state = lambda: registry.get_sample_value("smsroute_breaker_state")  # noqa: E731
    assert state() == 0
    server.set_fault("http500")
    router.route("13800130001")
    router.route("13800130002")
    assert state() == 2
    clock.advance(10)
    assert state() == 1
    server.set_fault(None)
    router.route("13800130003")
    assert state() == 0


def test_balance_from_a_watcher(router, server):
    """With a watcher, the balance, its level and poll errors are exported once read."""
    watcher = BalanceWatcher(router.client, low_water=5000)  # type: ignore[arg-type]
    registry = scrape(PrometheusCollector(router, watcher=watcher))
    assert registry.get_sample_value("smsroute_balance") is None  # not polled yet
    watcher.poll()
    assert registry.get_sample_value("smsroute_balance") == 4321
    assert registry.get_sample_value("smsroute_balance_level") == 1  # under 5000: low
    server.set_fault("http502")
    watcher.poll()
    server.set_fault(None)
    assert registry.get_sample_value("smsroute_balance_poll_errors_total") == 1
    assert registry.get_sample_value("smsroute_balance") == 4321  # the last good reading


def test_exposition_parses_and_names_every_family(router, server):
    """The text exposition parses back and holds every documented family."""
    traffic(router, server)
    watcher = BalanceWatcher(router.client)  # type: ignore[arg-type]
    watcher.poll()
    registry = scrape(PrometheusCollector(router, watcher=watcher))
    text = generate_latest(registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names == {
        "smsroute_decisions",
        "smsroute_fallbacks",
        "smsroute_upstream_calls",
        "smsroute_coalesced",
        "smsroute_reroutes",
        "smsroute_errors",
        "smsroute_upstream_latency_seconds",
        "smsroute_breaker_state",
        "smsroute_breaker_opened",
        "smsroute_cache_size",
        "smsroute_cache_errors",
        "smsroute_cache_available",
        "smsroute_balance",
        "smsroute_balance_level",
        "smsroute_balance_poll_errors",
    }
    assert server.apikey not in text


def test_registration_does_not_scrape(router, monkeypatch):
    """Registering (even with auto_describe) reads no stats; describe() names the families."""
    calls: list[int] = []
    stats = router.stats
    monkeypatch.setattr(router, "stats", lambda: calls.append(1) or stats())
    registry = CollectorRegistry(auto_describe=True)
    PrometheusCollector(router).register(registry)
    assert calls == []
    registry.get_sample_value("smsroute_upstream_calls_total")
    assert calls == [1]


def test_namespaces_keep_two_routers_apart(router, server):
    """Two routers register in one registry under different namespaces; the same one twice fails."""
    registry = CollectorRegistry()
    PrometheusCollector(router).register(registry)
    PrometheusCollector(router, namespace="sms_b").register(registry)
    router.route("13800138000")
    assert registry.get_sample_value("sms_b_upstream_calls_total") == 1
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusCollector(router).register(registry)


def test_without_prometheus_client():
    """Without the extra, import smsroute works and smsroute.metrics names the extra to install."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "prometheus_client" or name.startswith("prometheus_client."):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import smsroute
        smsroute.Router, smsroute.CarrierClient
        try:
            import smsroute.metrics
        except ImportError as exc:
            print("ERR", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ERR" in done.stdout
    assert "smsroute[prometheus]" in done.stdout


LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT = re.compile(r"[a-z]+(\.[a-z_]+)+")


def emitted_events() -> dict[str, str]:
    """Return every structlog event name the package logs, with the module logging it."""
    events: dict[str, str] = {}
    for path in sorted(Path(smsroute.__file__).parent.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        # Lines written through a plain stdlib format (the service's access log).
        for name in re.findall(r'"event=([a-z_]+\.[a-z_.]+) ', source):
            events[name] = path.name
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            named = (isinstance(func, ast.Attribute) and func.attr in LEVELS) or (
                isinstance(func, ast.Name) and func.id in ("level", "log")
            )
            first = node.args[0]
            text = first.value if isinstance(first, ast.Constant) else None
            if named and isinstance(text, str) and EVENT.fullmatch(text):
                events[text] = path.name
    return events


def test_every_log_event_is_documented():
    """Each event name logged anywhere in smsroute has a row in docs/events.md, and vice versa."""
    doc = (Path(__file__).parents[1] / "docs" / "events.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", doc, flags=re.MULTILINE))
    events = emitted_events()
    assert {"client.call", "route.fallback", "breaker.state", "balance.low"} <= set(events)
    missing = {name: where for name, where in events.items() if name not in documented}
    assert not missing, f"undocumented log events: {missing}"
    assert not documented - set(events), "documented but never logged"


def test_cache_errors_the_backend_absorbed_are_counted():
    """A backend that absorbs its own failures (Redis, SQLite) still shows them in stats."""
    from _fakes import FakeClient

    from smsroute import MemoryCache, Router

    class Absorbing(MemoryCache):
        """A cache that counts failures it swallowed, like RedisCache and SqliteCache."""

        errors = 7
        available = False

    router = Router(FakeClient(), {"移动": "m"}, cache=Absorbing())
    stats = router.stats()
    assert (stats["cache_errors"], stats["cache_available"]) == (7, False)
    assert Router(FakeClient(), {"移动": "m"}).stats()["cache_errors"] is None
