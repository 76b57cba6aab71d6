"""Tests for single-flight: in-process (threads) and fleet-wide (the SharedFlight hook)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from _fakes import (
    MOBILE_NO,
    UNICOM_NO,
    BlockingClient,
    BudgetedClient,
    FakeClient,
    M,
    SharedCache,
    T,
    U,
    api_error,
    info,
)

from smsroute import codec
from smsroute.routing import Router
from smsroute.singleflight import Flight, SingleFlight
from smsroute.testing import FakeClock
from smsroute.types import SharedFlight

GW = {M: "gw-mobile", U: "gw-unicom", T: "gw-telecom"}
N = 50


# -- SingleFlight ---------------------------------------------------------------------------


def test_first_joiner_leads_the_rest_follow():
    """The first join() of a key leads; later joins get the same flight as followers."""
    sf: SingleFlight[int] = SingleFlight()
    flight, leader = sf.join("a")
    again, follower_leads = sf.join("a")
    other, other_leads = sf.join("b")
    assert leader
    assert not follower_leads
    assert again is flight
    assert flight.followers == 1
    assert other_leads
    assert other is not flight
    assert len(sf) == 2


def test_finish_publishes_to_followers():
    """A follower waiting on the flight sees the leader's result or error."""
    flight: Flight[int] = Flight()
    assert not flight.wait(0)
    flight.finish(result=7)
    assert flight.wait(0)
    assert (flight.result, flight.error) == (7, None)
    failed: Flight[int] = Flight()
    boom = RuntimeError("x")
    failed.finish(error=boom)
    assert failed.wait(0)
    assert (failed.result, failed.error) == (None, boom)


def test_land_starts_a_new_flight_and_ignores_strangers():
    """After land() the next join leads again; landing someone else's flight removes nothing."""
    sf: SingleFlight[int] = SingleFlight()
    first, _ = sf.join("a")
    sf.land("a", Flight())
    assert sf.join("a") == (first, False)
    sf.land("a", first)
    assert len(sf) == 0
    second, leads = sf.join("a")
    assert leads
    assert second is not first


# -- the router, many threads --------------------------------------------------------------


def burst(router: Router, number: str, n: int = N) -> list:
    """Release ``n`` threads at once on route(number); return their outcomes in order."""
    barrier = threading.Barrier(n)

    def one(_i: int):
        barrier.wait(timeout=5)
        try:
            return router.route(number)
        except Exception as exc:  # returned so that the test sees it
            return exc

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        return [f.result(timeout=10) for f in futures]


def open_gate_when_all_joined(
    router: Router, client: BlockingClient, n: int = N
) -> threading.Thread:
    """Open the client's gate once ``n - 1`` route() calls wait on the leader's flight."""

    def watch() -> None:
        end = time.monotonic() + 5.0
        while router.stats()["coalesced"] < n - 1 and time.monotonic() < end:
            time.sleep(0.001)  # polling a counter, not waiting out a TTL
        client.gate.set()

    t = threading.Thread(target=watch)
    t.start()
    return t


def test_burst_on_one_uncached_number_makes_one_call():
    """50 threads routing one uncached number at once buy one query and share its answer."""
    client = BlockingClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = Router(client, GW, deadline=5.0)
    watcher = open_gate_when_all_joined(router, client)
    results = burst(router, MOBILE_NO)
    watcher.join()
    assert client.calls == [MOBILE_NO]
    assert all(not isinstance(r, Exception) for r in results), results
    assert {(d.mobile, d.carrier, d.gateway, d.source) for d in results} == {
        (MOBILE_NO, T, "gw-telecom", "upstream")
    }
    stats = router.stats()
    assert stats["upstream_calls"] == 1
    assert stats["coalesced"] == N - 1
    assert stats["hits"] + stats["misses"] == N
    assert router.route(MOBILE_NO).source == "cache"


def test_burst_shares_a_failure_too():
    """When the one call fails, every waiter falls back, and no one asks again meanwhile."""
    client = BlockingClient(script=[api_error(-8)])
    router = Router(client, GW, deadline=5.0)
    watcher = open_gate_when_all_joined(router, client)
    results = burst(router, MOBILE_NO)
    watcher.join()
    assert client.calls == [MOBILE_NO]
    assert {(d.source, d.carrier) for d in results} == {("fallback", M)}
    assert all("ServiceError" in (d.reason or "") for d in results)
    # The flight has landed: the next miss asks again.
    assert router.route(MOBILE_NO).source == "upstream"
    assert len(client.calls) == 2


def test_different_numbers_fly_separately():
    """Single-flight is per number: two numbers at once make two calls."""
    client = FakeClient()
    router = Router(client, GW)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(router.route, [MOBILE_NO, UNICOM_NO]))
    assert sorted(client.calls) == sorted([MOBILE_NO, UNICOM_NO])


# -- SharedFlight (a fleet's shared cache) -------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """Return the fake time of the router and its shared cache."""
    return FakeClock()


def shared_router(cache: SharedCache, clock: FakeClock, client: FakeClient) -> Router:
    """Return a router over a cache that implements SharedFlight."""
    assert isinstance(cache, SharedFlight)
    return Router(client, GW, cache=cache, clock=clock, deadline=0.5)


ANSWER = codec.encode(info(MOBILE_NO, "电信"))


def test_other_worker_answers_zero_calls(clock):
    """When another worker holds the claim, its answer is used: source "cache", no query."""
    cache = SharedCache(timer=clock, claims=False)
    cache.other_answer = ANSWER
    client = FakeClient()
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert (d.source, d.carrier, d.gateway) == ("cache", T, "gw-telecom")
    assert d.info == info(MOBILE_NO, "电信")
    assert client.calls == []
    assert cache.ops() == ["claim", "wait"]  # no release: this worker held no claim
    assert 0 < cache.log[1][2] <= 0.5  # waits within the deadline


def test_claim_holder_asks_and_releases(clock):
    """The worker that gets the claim asks the upstream, stores the answer, then releases."""
    cache = SharedCache(timer=clock, claims=True)
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = shared_router(cache, clock, client)
    assert router.route(MOBILE_NO).source == "upstream"
    assert client.calls == [MOBILE_NO]
    assert cache.ops() == ["claim", "release"]
    assert cache.get(MOBILE_NO) == (ANSWER, True)
    assert router.route(MOBILE_NO).source == "cache"
    assert cache.ops() == ["claim", "release"]  # a hit claims nothing


def test_claim_holder_releases_after_a_failure(clock):
    """A failed lookup still releases the claim, so another worker may try."""
    cache = SharedCache(timer=clock, claims=True)
    client = FakeClient(script=[api_error(-8)])
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert d.source == "fallback"
    assert cache.ops() == ["claim", "release"]


def test_other_worker_not_found(clock):
    """Another worker's NOT_FOUND makes a segment-table fallback here, without a query."""
    cache = SharedCache(timer=clock, claims=False)
    cache.other_answer = codec.NOT_FOUND
    client = FakeClient()
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert (d.source, d.carrier) == ("fallback", M)
    assert "NumberNotFound" in (d.reason or "")
    assert client.calls == []


def test_no_answer_from_the_holder_asks_itself(clock):
    """When the holder gave up (no answer, time left) this worker asks the upstream itself."""
    cache = SharedCache(timer=clock, claims=False)
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert d.source == "upstream"
    assert client.calls == [MOBILE_NO]


def test_holder_gave_up_and_another_worker_reclaimed(clock):
    """When the holder let go and another waiter claimed first, this one pays nothing."""
    cache = SharedCache(timer=clock, claims=False, reclaimable=False)
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert (d.source, d.carrier) == ("fallback", M)
    assert client.calls == []
    assert cache.ops() == ["claim", "wait", "claim"]


def test_holder_too_slow_falls_back_without_a_query(clock):
    """When the wait used up the deadline, the router falls back rather than ask late."""

    class SlowShared(SharedCache):
        def wait(self, number, timeout):
            clock.advance(timeout)
            return super().wait(number, timeout)

    cache = SlowShared(timer=clock, claims=False)
    client = FakeClient()
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert (d.source, d.carrier) == ("fallback", M)
    assert "deadline" in (d.reason or "")
    assert client.calls == []


def test_asking_after_a_wait_gets_what_is_left_of_the_deadline(clock):
    """After waiting in vain for another worker, the client's timeout is the remaining budget."""

    class PartWait(SharedCache):
        def wait(self, number, timeout):
            clock.advance(0.3)
            return super().wait(number, timeout)  # no other answer: None

    cache = PartWait(timer=clock, claims=False)
    client = BudgetedClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    d = shared_router(cache, clock, client).route(MOBILE_NO)  # deadline 0.5
    assert d.source == "upstream"
    assert client.timeouts == [pytest.approx(0.2 - 0.02)]  # less the router's headroom


def test_stale_entry_is_not_the_holders_answer(clock):
    """A stale answer read while waiting is not labelled "cache": the upstream is asked."""
    cache = SharedCache(timer=clock, claims=False, ttl=10.0, stale_ttl=100.0)
    cache.set(MOBILE_NO, codec.encode(info(MOBILE_NO, "联通")))
    clock.advance(20.0)
    cache.other_answer = codec.encode(info(MOBILE_NO, "联通"))
    cache.other_fresh = False
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    d = shared_router(cache, clock, client).route(MOBILE_NO)
    assert (d.source, d.carrier) == ("upstream", T)


def test_broken_shared_store_does_not_fail_a_send(clock):
    """A claim() that raises counts as a cache error; the router asks (no token: no release)."""
    cache = SharedCache(timer=clock)
    cache.raise_on = {"claim"}
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = shared_router(cache, clock, client)
    assert router.route(MOBILE_NO).source == "upstream"
    assert router.stats()["errors"] == {"cache": 1}
    assert client.calls == [MOBILE_NO]
    assert cache.ops() == ["claim"]


def test_broken_wait_asks_itself(clock):
    """A wait() that raises counts as a cache error and the router asks the upstream."""
    cache = SharedCache(timer=clock, claims=False)
    cache.raise_on = {"wait"}
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = shared_router(cache, clock, client)
    assert router.route(MOBILE_NO).source == "upstream"
    assert router.stats()["errors"] == {"cache": 1}
