"""Tests for drop-in vendor mode: /carrier and /balance answer exactly as the vendor does."""

from __future__ import annotations

from typing import Any

import pytest
from _serve import CLIENT_KEY, PLAIN, PORTED, UNICOM, keyed, run, serving, settings_for

from smsroute import MemoryCache
from smsroute.testing import FakeClock


@pytest.fixture
def vendor(fake_carrier_server):
    """The fake vendor with the numbers these tests use pinned."""
    fake_carrier_server.set_answer(PLAIN, res=0, area="北京-北京")
    fake_carrier_server.set_answer(UNICOM, res=0, init="联通", area="广东-深圳")
    return fake_carrier_server


def shape(body: Any) -> Any:
    """Return the keys and value types of an answer, recursively (values left out)."""
    if isinstance(body, dict):
        return {k: shape(v) for k, v in body.items()}
    return type(body).__name__


async def both(client, vendor, method: str, path: str, params: dict[str, str]):
    """Send one request to the service and the same one to the vendor; return both bodies."""
    sent = {"params": params} if method == "GET" else {"data": params}
    ours = await client.request(method, path, **sent)
    theirs = await client.session.request(method, vendor.url + path, **sent)
    assert ours.status == theirs.status == 200
    assert ours.headers["Content-Type"] == "application/json; charset=utf-8"
    return await ours.json(), await theirs.json()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_carrier_answers_with_the_vendors_shape_and_values(vendor, method):
    """/carrier answers the same keys, types and values as the vendor, by GET and by POST."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            out = []
            for number in (PORTED, PLAIN, UNICOM, "13700001234"):
                params = {"apikey": vendor.apikey, "mobile": number}
                out.append(await both(client, vendor, method, "/carrier", params))
                # again: now from the cache, still the same answer
                out.append(await both(client, vendor, method, "/carrier", params))
            return out

    for ours, theirs in run(main()):
        assert shape(ours) == shape(theirs)
        assert list(ours) == ["code", "reason", "result"]
        assert list(ours["result"]) == ["res", "Mobile", "Area", "Init_isp", "Now_isp"]
        assert ours == theirs


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"apikey": "k"}, 1),
        ({"apikey": "k", "mobile": ""}, 1),
        ({"apikey": "k", "mobile": "1397256539"}, -2),
        ({"apikey": "k", "mobile": "139725653911"}, -2),
        ({"apikey": "k", "mobile": "1397256539x"}, -3),
        ({"apikey": "k", "mobile": "10012345678"}, -3),
    ],
)
def test_carrier_refuses_bad_numbers_with_the_vendors_codes(vendor, params, code):
    """Missing, short, long, non-digit and non-mobile numbers get the vendor's code, unpaid."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            ours = await (await client.get("/carrier", params=params)).json()
            theirs = await (
                await client.session.get(
                    vendor.url + "/carrier", params={**params, "apikey": vendor.apikey}
                )
            ).json()
            return ours, theirs

    ours, theirs = run(main())
    assert ours["code"] == theirs["code"] == code
    assert ours == theirs
    assert vendor.paid == 0


def test_the_apikey_is_a_client_key_checked_here_and_never_forwarded(vendor):
    """With client keys: the caller's apikey is checked (wrong: -1, none: 1), never sent on."""

    async def main():
        async with serving(keyed(vendor)) as (client, _service):
            wrong = await client.get("/carrier", params={"apikey": "x" * 20, "mobile": PORTED})
            none = await client.get("/carrier", params={"mobile": PORTED})
            ok = await client.post("/carrier", data={"apikey": CLIENT_KEY, "mobile": PORTED})
            header = await client.get(
                "/carrier", params={"mobile": PORTED}, headers={"X-Api-Key": CLIENT_KEY}
            )
            balance = await client.get("/balance", params={"apikey": "y" * 20})
            return [await r.json() for r in (wrong, none, ok, header, balance)]

    wrong, none, ok, header, balance = run(main())
    assert (wrong["code"], wrong["result"]) == (-1, None)
    assert wrong["reason"] == "apikey信息不匹配(用户信息不正确)apikey不正确"
    assert none["code"] == 1
    assert ok["code"] == header["code"] == 0
    assert ok["result"]["Now_isp"] == "电信"
    assert balance["code"] == -1
    assert vendor.paid == 1
    assert all(r.params.get("apikey") == vendor.apikey for r in vendor.requests)


def test_repeated_numbers_are_answered_from_the_cache(vendor):
    """Three asks for one number pay one query."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            for _ in range(3):
                r = await client.get("/carrier", params={"apikey": "any", "mobile": PORTED})
                assert (await r.json())["code"] == 0

    run(main())
    assert vendor.paid == 1
    assert vendor.carrier_calls == 1


def test_an_unknown_number_is_code_minus_4_now_and_from_the_cache(vendor):
    """The vendor's -4 passes through, also when it comes from the negative cache."""
    vendor.set_answer("13600001234", code=-4)

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            params = {"apikey": "any", "mobile": "13600001234"}
            first = await (await client.get("/carrier", params=params)).json()
            again = await (await client.get("/carrier", params=params)).json()
            return first, again

    first, again = run(main())
    assert (
        first
        == again
        == {
            "code": -4,
            "reason": "未查询到相关信息或填写正确的手机号码再查询",
            "result": None,
        }
    )
    assert vendor.carrier_calls == 1


def test_vendor_down_answers_code_0_from_the_segment_table(vendor):
    """With the vendor failing: code 0, res "0", Now_isp = Init_isp, and a source key."""

    async def main():
        async with serving(settings_for(vendor)) as (client, _service):
            vendor.fault = "http502"
            r = await client.post("/carrier", data={"apikey": "any", "mobile": PORTED})
            return r.status, await r.json()

    status, body = run(main())
    assert status == 200
    assert body == {
        "code": 0,
        "reason": "Succ",
        "result": {
            "res": "0",
            "Mobile": PORTED,
            "Area": "",
            "Init_isp": "移动",
            "Now_isp": "移动",
        },
        "source": "fallback",
    }


def test_vendor_down_answers_an_expired_answer_as_stale(vendor):
    """A stale cached answer keeps its port and area; the source key says stale."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock, ttl=100, stale_ttl=1000)

    async def main():
        async with serving(settings_for(vendor), cache=cache) as (client, _service):
            params = {"apikey": "any", "mobile": PORTED}
            fresh = await (await client.get("/carrier", params=params)).json()
            clock.advance(200)
            vendor.fault = -8
            stale = await (await client.get("/carrier", params=params)).json()
            return fresh, stale

    fresh, stale = run(main())
    assert stale == {**fresh, "source": "stale"}
    assert stale["result"]["res"] == "1"


@pytest.mark.parametrize(
    ("fault", "code"),
    [(-8, -8), ("http500", -8), ("html", -8), (-5, -5), (-1, -8), (-9, -8)],
)
def test_compat_errors_pass_gives_the_vendors_error(vendor, fault, code):
    """compat_errors = "pass": the vendor's error code instead of a fallback; -1/-9 read -8."""

    async def main():
        settings = settings_for(vendor, serve={"compat_errors": "pass"})
        async with serving(settings) as (client, _service):
            vendor.fault = fault
            r = await client.get("/carrier", params={"apikey": "any", "mobile": PORTED})
            after = await client.get("/carrier", params={"apikey": "any", "mobile": PLAIN})
            return await r.json(), await after.json()

    body, after = run(main())
    assert body["code"] == code
    assert body["result"] is None
    assert "source" not in body
    # Later asks while the breaker is open keep the same code.
    assert after["code"] == code if code == -5 else after["code"] == -8


def test_balance_is_relayed_and_cached_a_few_seconds(vendor):
    """/balance answers the vendor's result as it came; a second ask within balance_ttl is free."""

    async def main():
        async with serving(settings_for(vendor, serve={"balance_ttl": 60})) as (client, _service):
            ours = await (await client.get("/balance", params={"apikey": "any"})).json()
            again = await (await client.post("/balance", data={"apikey": "any"})).json()
            theirs = await (
                await client.session.get(vendor.url + "/balance", params={"apikey": vendor.apikey})
            ).json()
            return ours, again, theirs

    ours, again, theirs = run(main())
    assert ours == again == theirs
    assert shape(ours) == {
        "code": "int",
        "reason": "str",
        "result": {"feeType": "str", "balance": "str"},
    }
    balance_calls = [r for r in vendor.requests if r.path.startswith("/balance")]
    assert len(balance_calls) == 2  # ours once, and the test's own direct ask


def test_balance_when_the_vendor_fails(vendor):
    """A failing vendor reads -8; the service's own wrong key is -8 too, never the caller's -1."""

    async def main():
        async with serving(settings_for(vendor, serve={"balance_ttl": 0})) as (client, _service):
            vendor.fault = "http500"
            down = await (await client.get("/balance")).json()
            vendor.fault = -1
            unauthorized = await (await client.get("/balance")).json()
            vendor.fault = -5
            exhausted = await (await client.get("/balance")).json()
            return down, unauthorized, exhausted

    down, unauthorized, exhausted = run(main())
    assert (down["code"], unauthorized["code"], exhausted["code"]) == (-8, -8, -5)


def test_over_the_callers_qps_is_429_in_the_vendors_shape(vendor):
    """/carrier over a caller's qps: HTTP 429 with Retry-After and the vendor's 'try later'."""

    async def main():
        async with serving(keyed(vendor, billing={"qps": 1, "burst": 1})) as (client, _service):
            params = {"apikey": CLIENT_KEY, "mobile": PORTED}
            first = await client.get("/carrier", params=params)
            second = await client.get("/carrier", params=params)
            return (
                first.status,
                second.status,
                second.headers.get("Retry-After"),
                await second.json(),
            )

    first, second, retry, body = run(main())
    assert (first, second) == (200, 429)
    assert int(retry) >= 1
    assert body["code"] == -8
