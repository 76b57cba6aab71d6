"""Tests for smsroute serve operations: health, readiness, metrics, status, logs, quotas."""

from __future__ import annotations

import logging
import re
import sys
import types

import pytest
from _serve import (
    CLIENT_KEY,
    OTHER_KEY,
    PLAIN,
    PORTED,
    UNICOM,
    bearer,
    keyed,
    run,
    serving,
    settings_for,
)
from aiohttp import web

from smsroute.serve.app import KANNEL_MODULE
from smsroute.serve.decisions import PolicyView


@pytest.fixture
def vendor(fake_carrier_server):
    """The fake vendor with the numbers these tests use pinned."""
    fake_carrier_server.set_answer(PLAIN, res=0, area="北京-北京")
    fake_carrier_server.set_answer(UNICOM, res=0, init="联通", area="广东-深圳")
    return fake_carrier_server


def test_healthz_and_readyz_when_all_is_well(vendor):
    """/healthz and /readyz answer 200 in JSON."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            return health.status, await health.json(), ready.status, await ready.json()

    assert run(main()) == (200, {"status": "ok"}, 200, {"ready": True})


@pytest.mark.parametrize(("fault", "kind"), [(-1, "unauthorized"), (-5, "balance exhausted")])
def test_readyz_is_503_while_the_breaker_is_hard_open(vendor, fault, kind):
    """A wrong vendor key or an empty account makes the service unready, with the reason."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            vendor.fault = fault
            routed = await (await client.get("/v1/route", params={"mobile": PORTED})).json()
            ready = await client.get("/readyz")
            return routed, ready.status, await ready.json()

    routed, status, body = run(main())
    assert routed["source"] == "fallback"  # still answered
    assert status == 503
    assert body["ready"] is False
    assert body["reason"].startswith(f"vendor {kind} (code {fault})")
    assert vendor.apikey not in body["reason"]


def test_readyz_is_not_503_for_a_plain_outage(vendor):
    """A breaker open on timeouts and 5xx is no reason to take the instance out."""

    async def main():
        async with serving(settings_for(vendor)) as (client, service):
            vendor.fault = "http500"
            for i in range(8):
                await client.get("/v1/route", params={"mobile": f"1390000{i:04d}"})
            ready = await client.get("/readyz")
            return service.router.breaker.state, ready.status

    state, status = run(main())
    assert state == "open"
    assert status == 200


def test_readyz_is_503_when_the_redis_cache_is_unreachable(vendor):
    """[cache] backend = "redis" at a closed port: unready, saying why; routing still works."""
    settings = settings_for(vendor, cache={"backend": "redis", "url": "redis://127.0.0.1:1/0"})

    async def main():
        async with serving(settings) as (client, _service):
            ready = await client.get("/readyz")
            routed = await client.get("/v1/route", params={"mobile": PORTED})
            return ready.status, await ready.json(), routed.status

    status, body, routed = run(main())
    assert status == 503
    assert body["reason"].startswith("redis cache unreachable")
    assert routed == 200


def test_readyz_is_503_while_draining(vendor):
    """A draining service says so."""

    async def main():
        async with serving(settings_for(vendor)) as (client, service):
            service.draining = True
            r = await client.get("/readyz")
            return r.status, await r.json()

    status, body = run(main())
    assert status == 503
    assert body["reason"].startswith("draining")


def test_metrics_has_router_and_http_series(vendor):
    """/metrics: the router's counters and requests by endpoint and status, Prometheus text."""
    pytest.importorskip("prometheus_client")

    async def main():
        async with serving(keyed(vendor, billing={"daily_queries": 10})) as (client, _service):
            await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            await client.get("/v1/route", params={"mobile": "123"}, headers=bearer())
            await client.get("/carrier", params={"apikey": CLIENT_KEY, "mobile": PLAIN})
            r = await client.get("/metrics")
            return r.status, r.headers["Content-Type"], await r.text()

    status, ctype, text = run(main())
    assert status == 200
    assert ctype.startswith("text/plain")
    assert 'smsroute_decisions_total{carrier="电信",source="upstream"} 1.0' in text
    assert 'smsroute_decisions_total{carrier="电信",source="cache"} 1.0' in text
    assert (
        'smsroute_http_requests_total{endpoint="/v1/route",method="GET",status="200"} 2.0' in text
    )
    assert (
        'smsroute_http_requests_total{endpoint="/v1/route",method="GET",status="400"} 1.0' in text
    )
    assert 'smsroute_http_requests_total{endpoint="/carrier",method="GET",status="200"} 1.0' in text
    assert 'smsroute_http_request_duration_seconds_count{endpoint="/v1/route"} 3.0' in text
    assert "smsroute_queries_paid_total 2.0" in text
    assert 'smsroute_client_queries_today{client="billing"} 2.0' in text
    assert "smsroute_upstream_calls_total 2.0" in text
    assert CLIENT_KEY not in text


def test_metrics_without_prometheus_client_is_501(vendor, monkeypatch):
    """Without prometheus-client, /metrics answers 501 with the hint; the rest works."""
    monkeypatch.setitem(sys.modules, "smsroute.serve.prom", None)  # import raises ImportError

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            r = await client.get("/metrics")
            return r.status, await r.json()

    status, body = run(main())
    assert status == 501
    assert "pip install 'smsroute[prometheus]'" in body["message"]


def test_the_status_page_shows_the_state_but_no_key_and_no_full_number(vendor):
    """/ is HTML with decisions, ratio, breaker, balance and fallbacks; keys and numbers never."""
    numbers = [PORTED, PLAIN, UNICOM, "13900001111", "13900002222"]

    async def main():
        settings = keyed(vendor, billing={"qps": 100, "daily_queries": 1000}, balance_interval=60)
        async with serving(settings) as (client, _service):
            for n in numbers[:3]:
                await client.get("/v1/route", params={"mobile": n}, headers=bearer())
            await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            vendor.fault = "http500"
            for n in numbers[3:]:
                await client.post("/carrier", data={"apikey": OTHER_KEY, "mobile": n})
            await client.post("/v1/route/batch", json={"mobiles": numbers}, headers=bearer())
            r = await client.get("/")
            return r.status, r.headers["Content-Type"], await r.text()

    status, ctype, page = run(main())
    assert status == 200
    assert ctype == "text/html; charset=utf-8"
    assert page.startswith("<!doctype html>")
    assert "<script" not in page.lower()
    assert "http://" not in page
    assert "https://" not in page
    for heading in ("Decisions by source", "Decisions by operator", "Last fallbacks", "Clients"):
        assert f"<h2>{heading}</h2>" in page
    assert "cache hit ratio" in page
    assert "queries paid" in page
    assert re.search(r"\d+ queries \(预付费\)", page)  # the balance, read at start
    assert "139****1111" in page  # a fallback, masked
    assert "billing" in page
    assert "marketing" in page
    for secret in (CLIENT_KEY, OTHER_KEY, vendor.apikey):
        assert secret not in page
    assert re.search(r"(?<!\d)1\d{10}(?!\d)", page) is None, "a full number is on the page"


def test_access_log_is_structured_masked_and_keyless(vendor, caplog):
    """One http.request event per request: method, path, status, ms, client; no key, no number."""
    caplog.set_level(logging.INFO, logger="smsroute")

    async def main():
        async with serving(keyed(vendor)) as (client, _service):
            await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            await client.get("/carrier", params={"apikey": OTHER_KEY, "mobile": PORTED})
            await client.get("/v1/route", params={"mobile": PORTED})

    run(main())
    lines = [r.getMessage() for r in caplog.records if "http.request" in r.getMessage()]
    assert len(lines) == 3
    assert "method=GET" in lines[0]
    assert "path=/v1/route" in lines[0]
    assert "status=200" in lines[0]
    assert "client=billing" in lines[0]
    assert re.search(r"ms=\d", lines[0])
    assert "client=marketing" in lines[1]
    assert "status=401" in lines[2]
    assert "client=-" in lines[2]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (CLIENT_KEY, OTHER_KEY, vendor.apikey, PORTED):
        assert secret not in text


def test_daily_quota_makes_misses_fall_back_instead_of_paying(vendor):
    """Past its daily_queries a caller's misses fall back; its hits and other callers go on."""

    async def main():
        async with serving(keyed(vendor, billing={"daily_queries": 2})) as (client, service):
            out = []
            for n in (PORTED, PLAIN, UNICOM):
                r = await client.get("/v1/route", params={"mobile": n}, headers=bearer())
                out.append(await r.json())
            hit = await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            other = await client.get(
                "/v1/route", params={"mobile": "13900001111"}, headers=bearer(OTHER_KEY)
            )
            billing = service.callers.callers[0]
            return out, await hit.json(), await other.json(), service.limits.used_today(billing)

    out, hit, other, used = run(main())
    assert [d["source"] for d in out] == ["upstream", "upstream", "fallback"]
    assert out[2]["reason"].startswith("throttled: client billing used its 2 daily queries")
    assert hit["source"] == "cache"
    assert other["source"] == "upstream"
    assert used == 2
    assert vendor.paid == 3


def test_a_lookup_that_got_no_answer_gives_its_query_back(vendor):
    """Failed lookups are not counted against the quota."""

    async def main():
        async with serving(keyed(vendor, billing={"daily_queries": 1})) as (client, _service):
            vendor.fault = -8
            failed = await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())
            vendor.fault = None
            paid = await client.get("/v1/route", params={"mobile": PLAIN}, headers=bearer())
            return (await failed.json())["source"], (await paid.json())["source"]

    assert run(main()) == ("fallback", "upstream")


def test_kannel_routes_are_added_when_configured(vendor, monkeypatch):
    """[kannel] sendsms_url: the app adds smsroute.serve.kannel's routes, given the policy view."""
    seen = {}

    def kannel_routes(router, sendsms_url, *, timeout=5.0):
        seen.update(router=router, url=sendsms_url, timeout=timeout)

        async def sendsms(request):
            decision = await router.route(request.query["to"])
            return web.Response(text=f"{decision.gateway} {sendsms_url}")

        return [web.get("/cgi-bin/sendsms", sendsms)]

    fake = types.ModuleType(KANNEL_MODULE)
    fake.kannel_routes = kannel_routes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, KANNEL_MODULE, fake)
    url = "http://127.0.0.1:13013/cgi-bin/sendsms"
    settings = settings_for(
        vendor, gateways={"电信": "smgp-1"}, kannel={"sendsms_url": url, "timeout": 2.0}
    )

    async def main():
        async with serving(settings) as (client, _service):
            r = await client.get("/cgi-bin/sendsms", params={"to": PORTED})
            return r.status, await r.text()

    status, text = run(main())
    assert (status, text) == (200, f"smgp-1 {url}")
    assert isinstance(seen["router"], PolicyView)
    assert (seen["url"], seen["timeout"]) == (url, 2.0)


def test_without_the_kannel_module_the_app_still_serves(vendor, monkeypatch, caplog):
    """While smsroute.serve.kannel does not exist, a [kannel] table only logs a warning."""
    monkeypatch.setitem(sys.modules, KANNEL_MODULE, None)  # import raises ModuleNotFoundError
    settings = settings_for(vendor, kannel={"sendsms_url": "http://127.0.0.1:13013/x"})

    async def main():
        async with serving(settings) as (client, _service):
            return (await client.get("/cgi-bin/sendsms")).status, (
                await client.get("/healthz")
            ).status

    assert run(main()) == (404, 200)
    assert any("serve.kannel_unavailable" in r.getMessage() for r in caplog.records)


def test_stderr_is_written_in_batches_and_at_once_for_warnings():
    """BatchedStderr flushes at most every FLUSH_EVERY seconds, and at once for a warning."""
    import io

    from smsroute.serve.logs import BatchedStderr

    class Stream(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    stream = Stream()
    handler = BatchedStderr(stream)
    logger = logging.getLogger("smsroute.test_batched")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(50):
            logger.info("line %d", i)
        assert stream.flushes <= 2
        before = stream.flushes
        logger.warning("now")
        assert stream.flushes == before + 1
        handler.close()
        assert stream.getvalue().count("\n") == 51
    finally:
        logger.removeHandler(handler)


def test_lookups_past_the_connection_pool_wait_here_and_fall_back_as_throttled():
    """With every vendor connection busy, a lookup waits within its budget, then is Throttled."""
    import asyncio

    from smsroute.errors import Throttled
    from smsroute.serve.callers import Limits, MeteredClient

    class Slow:
        max_connections = 1

        async def lookup(self, number, *, timeout=None):
            await asyncio.sleep(0.5)
            return number

    async def main():
        metered = MeteredClient(Slow(), Limits(0))
        first = asyncio.ensure_future(metered.lookup("13800138000", timeout=1.0))
        await asyncio.sleep(0.01)
        with pytest.raises(Throttled, match="all 1 vendor connections busy"):
            await metered.lookup("13800138001", timeout=0.3)
        assert await first == "13800138000"
        return metered.busy, metered.paid

    assert run(main()) == (1, 1)


def test_kannel_setup_is_preferred_when_the_module_has_it(vendor, monkeypatch):
    """A kannel module with setup_kannel(app, router, url, timeout=) is given the app itself."""
    calls = []

    def setup_kannel(app, router, sendsms_url, *, timeout=5.0):
        calls.append((type(router).__name__, sendsms_url, timeout))

        async def sendsms(request):
            return web.Response(text="ok")

        app.router.add_get("/cgi-bin/sendsms", sendsms)

    fake = types.ModuleType(KANNEL_MODULE)
    fake.setup_kannel = setup_kannel  # type: ignore[attr-defined]
    fake.kannel_routes = None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, KANNEL_MODULE, fake)
    settings = settings_for(vendor, kannel={"sendsms_url": "http://127.0.0.1:13013/x"})

    async def main():
        async with serving(settings) as (client, _service):
            return (await client.get("/cgi-bin/sendsms")).status

    assert run(main()) == 200
    assert calls == [("PolicyView", "http://127.0.0.1:13013/x", 5.0)]
