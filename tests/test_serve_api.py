"""Tests for the routing API of smsroute serve: /v1/route and /v1/route/batch over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from _serve import (
    CLIENT_KEY,
    OTHER_KEY,
    PLAIN,
    PORTED,
    UNICOM,
    VIRTUAL,
    bearer,
    keyed,
    run,
    serving,
    settings_for,
)

from smsroute import MemoryCache
from smsroute.testing import FakeClock

FIELDS = {
    "mobile",
    "carrier",
    "initial",
    "ported",
    "virtual",
    "area",
    "gateway",
    "source",
    "reason",
}
GATEWAYS = {"移动": "CMPP", "联通": "SGIP", "电信": "SMGP"}


@pytest.fixture
def vendor(fake_carrier_server):
    """The fake vendor with the numbers these tests use pinned."""
    fake_carrier_server.set_answer(PLAIN, res=0, area="北京-北京")
    fake_carrier_server.set_answer(UNICOM, res=0, init="联通", area="广东-深圳")
    return fake_carrier_server


def test_get_route_asks_once_then_answers_from_the_cache(vendor):
    """GET /v1/route answers the decision; the second ask is a cache hit; one query is paid."""

    async def main():
        async with serving(settings_for(vendor, gateways=GATEWAYS)) as (client, _service):
            first = await client.get("/v1/route", params={"mobile": PORTED})
            assert first.status == 200
            assert first.headers["Content-Type"] == "application/json; charset=utf-8"
            body = await first.json()
            again = await (await client.get("/v1/route", params={"mobile": PORTED})).json()
            return body, again

    body, again = run(main())
    assert set(body) == FIELDS
    assert body == {
        "mobile": PORTED,
        "carrier": "电信",
        "initial": "移动",
        "ported": True,
        "virtual": False,
        "area": "湖北-宜昌",
        "gateway": "SMGP",
        "source": "upstream",
        "reason": None,
    }
    assert again == {**body, "source": "cache"}
    assert vendor.paid == 1


def test_post_route_takes_json_or_a_form_and_pasted_forms(vendor):
    """POST /v1/route reads {"mobile": ...} or mobile=...; +86 and spaces are normalised."""

    async def main():
        async with serving(settings_for(vendor, gateways=GATEWAYS)) as (client, _service):
            as_json = await client.post("/v1/route", json={"mobile": UNICOM})
            as_form = await client.post("/v1/route", data={"mobile": "+86 186 1234 5678"})
            return await as_json.json(), await as_form.json()

    as_json, as_form = run(main())
    assert as_json["gateway"] == "SGIP"
    assert as_form["mobile"] == UNICOM
    assert as_form["source"] == "cache"


def test_rules_and_no_gateway_without_gateways_table(vendor):
    """Without [gateways] the gateway is the operator's name; rules still apply first."""
    rules = [{"gateway": "CT-HUBEI", "carrier": "电信", "province": "湖北"}]

    async def main():
        async with serving(settings_for(vendor, rules=rules)) as (client, _service):
            ported = await (await client.get("/v1/route", params={"mobile": PORTED})).json()
            plain = await (await client.get("/v1/route", params={"mobile": PLAIN})).json()
            return ported, plain

    ported, plain = run(main())
    assert ported["gateway"] == "CT-HUBEI"
    assert plain["gateway"] == "移动"


def test_an_invalid_number_is_400_and_pays_nothing(vendor):
    """A bad number answers 400 invalid_number before any query."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            out = []
            for number in ("12345", "1397256539x", "10012345678"):
                r = await client.get("/v1/route", params={"mobile": number})
                out.append((r.status, await r.json()))
            missing = await client.get("/v1/route")
            bad_json = await client.post(
                "/v1/route", data=b"{", headers={"Content-Type": "application/json"}
            )
            return out, missing.status, await missing.json(), bad_json.status

    out, missing_status, missing, bad_json = run(main())
    for status, body in out:
        assert status == 400
        assert body["error"] == "invalid_number"
        assert body["message"]
    assert (missing_status, missing["error"]) == (400, "bad_request")
    assert bad_json == 400
    assert vendor.carrier_calls == 0


def test_no_gateway_is_422(vendor):
    """An operator with no gateway and no default answers 422 no_route; reject refuses MVNOs."""

    async def main():
        settings = settings_for(
            vendor, gateways={"移动": "CMPP", "联通": "SGIP"}, routing={"virtual": "reject"}
        )
        async with serving(settings) as (client, _service):
            telecom = await client.get("/v1/route", params={"mobile": PORTED})
            again = await client.get("/v1/route", params={"mobile": PORTED})  # from the cache
            virtual = await client.get("/v1/route", params={"mobile": VIRTUAL})
            return (
                telecom.status,
                await telecom.json(),
                again.status,
                virtual.status,
                await virtual.json(),
            )

    telecom_status, telecom, again, virtual_status, virtual = run(main())
    assert (telecom_status, telecom["error"]) == (422, "no_route")
    assert again == 422
    assert "139****5391" in telecom["message"]
    assert PORTED not in telecom["message"]
    assert (virtual_status, virtual["error"]) == (422, "no_route")


def test_client_keys_are_checked(vendor):
    """With keys configured: none or a wrong one is 401; Bearer and X-Api-Key both work."""

    async def main():
        async with serving(keyed(vendor)) as (client, _service):
            none = await client.get("/v1/route", params={"mobile": PLAIN})
            wrong = await client.get(
                "/v1/route", params={"mobile": PLAIN}, headers=bearer("x" * 20)
            )
            ok = await client.get("/v1/route", params={"mobile": PLAIN}, headers=bearer())
            other = await client.get(
                "/v1/route", params={"mobile": PLAIN}, headers={"X-Api-Key": OTHER_KEY}
            )
            batch = await client.post("/v1/route/batch", json={"mobiles": [PLAIN]})
            return (
                none.status,
                none.headers.get("WWW-Authenticate"),
                await none.json(),
                wrong.status,
                ok.status,
                other.status,
                batch.status,
            )

    none, challenge, body, wrong, ok, other, batch = run(main())
    assert none == 401
    assert challenge.startswith("Bearer")
    assert body["error"] == "unauthorized"
    assert (wrong, ok, other, batch) == (401, 200, 200, 401)
    assert vendor.paid == 1


def test_over_the_callers_qps_is_429_with_retry_after(vendor):
    """A caller over its qps gets 429 and Retry-After; another caller is not held back."""

    async def main():
        settings = keyed(vendor, billing={"qps": 1, "burst": 2})
        async with serving(settings) as (client, _service):
            statuses = []
            retry = None
            for _ in range(3):
                r = await client.get("/v1/route", params={"mobile": PLAIN}, headers=bearer())
                statuses.append(r.status)
                if r.status == 429:
                    retry = r.headers["Retry-After"]
                    assert (await r.json())["error"] == "rate_limited"
            other = await client.get(
                "/v1/route", params={"mobile": PLAIN}, headers=bearer(OTHER_KEY)
            )
            return statuses, retry, other.status

    statuses, retry, other = run(main())
    assert statuses == [200, 200, 429]
    assert int(retry) >= 1
    assert other == 200


def test_batch_answers_in_order_and_pays_once_per_distinct_number(vendor):
    """/v1/route/batch: results in input order, errors in place, duplicates share one lookup."""
    numbers = [PORTED, PLAIN, PORTED, "not a number", UNICOM, PLAIN, 13800138000, None]

    async def main():
        async with serving(settings_for(vendor, gateways=GATEWAYS)) as (client, _service):
            r = await client.post("/v1/route/batch", json={"mobiles": numbers})
            return r.status, await r.json()

    status, body = run(main())
    assert status == 200
    results = body["results"]
    assert len(results) == len(numbers)
    assert [r.get("mobile") for r in results] == [
        PORTED,
        PLAIN,
        PORTED,
        None,
        UNICOM,
        PLAIN,
        PLAIN,
        None,
    ]
    assert results[0]["gateway"] == "SMGP"
    assert results[3]["error"] == results[7]["error"] == "invalid_number"
    assert set(results[1]) == FIELDS
    assert vendor.paid == 3


def test_batch_limits(vendor):
    """More than max_batch numbers is 413; a body without a list is 400."""

    async def main():
        settings = settings_for(vendor, serve={"max_batch": 3})
        async with serving(settings) as (client, _service):
            big = await client.post("/v1/route/batch", json={"mobiles": [PLAIN] * 4})
            wrong = await client.post("/v1/route/batch", json={"numbers": [PLAIN]})
            form = await client.post("/v1/route/batch", data={"mobiles": PLAIN})
            return big.status, await big.json(), wrong.status, form.status

    big, body, wrong, form = run(main())
    assert (big, body["error"]) == (413, "batch_too_large")
    assert wrong == 400
    assert form == 400
    assert vendor.carrier_calls == 0


def test_vendor_down_is_never_an_error(vendor):
    """With the vendor failing, answers are 200 from the segment table, saying so."""

    async def main():
        async with serving(settings_for(vendor, gateways=GATEWAYS)) as (client, _service):
            vendor.fault = "http500"
            one = await (await client.get("/v1/route", params={"mobile": PORTED})).json()
            many = await client.post("/v1/route/batch", json={"mobiles": [PLAIN, UNICOM]})
            vendor.fault = "hang"
            hung = await client.get("/v1/route", params={"mobile": "13900001111"})
            vendor.fault = None
            return one, many.status, await many.json(), hung.status, await hung.json()

    one, many_status, many, hung_status, hung = run(main())
    assert one["source"] == "fallback"
    assert one["carrier"] == one["initial"] == "移动"  # the segment table knows no port
    assert one["ported"] is None
    assert one["gateway"] == "CMPP"
    assert "HTTP 500" in one["reason"]
    assert many_status == 200
    assert [r["source"] for r in many["results"]] == ["fallback", "fallback"]
    assert hung_status == 200
    assert hung["source"] == "fallback"


def test_vendor_down_serves_an_expired_answer_as_stale(vendor):
    """An expired cached answer still knows the port: served as stale when the vendor fails."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock, ttl=100, stale_ttl=1000)

    async def main():
        async with serving(settings_for(vendor, gateways=GATEWAYS), cache=cache) as (client, _s):
            await client.get("/v1/route", params={"mobile": PORTED})
            clock.advance(200)
            vendor.fault = -8
            return await (await client.get("/v1/route", params={"mobile": PORTED})).json()

    body = run(main())
    assert body["source"] == "stale"
    assert body["carrier"] == "电信"
    assert body["ported"] is True
    assert body["gateway"] == "SMGP"
    assert "-8" in body["reason"]


def test_request_limits(vendor):
    """A body over max_body is 413; an unknown path 404 and a wrong method 405, both in JSON."""

    async def main():
        settings = settings_for(vendor, serve={"max_body": 2048})
        async with serving(settings) as (client, _service):
            big = await client.post("/v1/route", data=b"mobile=" + b"1" * 4000)
            missing = await client.get("/v2/nothing")
            method = await client.delete("/v1/route")
            return (
                big.status,
                await big.json(),
                missing.status,
                await missing.json(),
                method.status,
                await method.json(),
            )

    big, big_body, missing, missing_body, method, method_body = run(main())
    assert (big, big_body["error"]) == (413, "too_large")
    assert (missing, missing_body["error"]) == (404, "not_found")
    assert (method, method_body["error"]) == (405, "method_not_allowed")


def test_a_slow_body_is_cut_off_with_408(vendor):
    """A client that sends its headers and then trickles the body gets 408 at read_timeout."""

    async def main():
        settings = settings_for(vendor, serve={"read_timeout": 0.3})
        async with serving(settings) as (client, _service):
            port = client.server.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
            return head

    head = run(main())
    assert head.startswith(b"HTTP/1.1 408")


def test_the_caller_key_is_never_sent_to_the_vendor(vendor):
    """Requests to the vendor carry the service's apikey only."""

    async def main():
        async with serving(keyed(vendor)) as (client, _service):
            await client.get("/v1/route", params={"mobile": PORTED}, headers=bearer())

    run(main())
    sent = vendor.requests
    assert sent
    assert all(r.params.get("apikey") == vendor.apikey for r in sent)
    assert all(CLIENT_KEY not in repr(r) for r in sent)


def test_a_sqlite_cache_keeps_answers_across_restarts(vendor, tmp_path):
    """[cache] backend = "sqlite": a second service on the same file pays nothing."""
    path = tmp_path / "answers.sqlite3"
    settings = settings_for(vendor, cache={"backend": "sqlite", "path": str(path)})

    async def ask():
        async with serving(settings) as (client, _service):
            r = await client.get("/v1/route", params={"mobile": PORTED})
            return (await r.json())["source"]

    assert run(ask()) == "upstream"
    assert run(ask()) == "cache"
    assert vendor.paid == 1
