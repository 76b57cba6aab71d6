"""Tests for Router.route(): decisions, gateways, virtual policy, rules, fallbacks, stats."""

from __future__ import annotations

import pytest
from _fakes import (
    BROADNET_NO,
    MOBILE_NO,
    SATELLITE_NO,
    TELECOM_NO,
    UNICOM_NO,
    VIRTUAL_NO,
    B,
    BudgetedClient,
    FakeClient,
    M,
    T,
    U,
    api_error,
    info,
)

from smsroute import codec
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.errors import ConfigurationError, InvalidNumber, NoRoute
from smsroute.models import CarrierInfo
from smsroute.routing import Decision, Router, Rule
from smsroute.testing import FakeClock

TTL, NEGATIVE_TTL, STALE_TTL = 100.0, 10.0, 1000.0


@pytest.fixture
def clock() -> FakeClock:
    """Return the fake time the router and its cache share."""
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> MemoryCache:
    """Return a small-TTL cache on the fake clock."""
    return MemoryCache(timer=clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)


def make_router(client, cache, clock, gw=None, **kwargs) -> Router:
    """Return a router over the fake client with one string gateway per operator."""
    if gw is None:
        gw = {M: "gw-mobile", U: "gw-unicom", T: "gw-telecom", B: "gw-broadnet"}
    return Router(client, gw, cache=cache, clock=clock, **kwargs)


# -- Decision ------------------------------------------------------------------------------


def test_decision_from_upstream(cache, clock):
    """A miss asks the upstream and says so: normalised mobile, current operator, its gateway."""
    answer = info(MOBILE_NO, "电信", area="湖北-宜昌")
    client = FakeClient({MOBILE_NO: answer})
    d = make_router(client, cache, clock).route("+86 139-0000-0001")
    assert d.mobile == MOBILE_NO
    assert d.carrier is Carrier.TELECOM
    assert d.gateway == "gw-telecom"
    assert d.source == "upstream"
    assert d.info == answer
    assert d.reason is None
    assert client.calls == [MOBILE_NO]


def test_decision_from_cache_rebuilds_info(cache, clock):
    """A hit says "cache" and still offers the whole answer (rebuilt from the code)."""
    answer = info(MOBILE_NO, "电信", area="湖北-宜昌")
    router = make_router(FakeClient({MOBILE_NO: answer}), cache, clock)
    first = router.route(MOBILE_NO)
    hit = router.route(MOBILE_NO)
    assert hit.source == "cache"
    assert hit.info == answer
    assert hit.info is not None
    assert (hit.info.ported, hit.info.province, hit.info.city) == (True, "湖北", "宜昌")
    assert hit == Decision(MOBILE_NO, T, "gw-telecom", "cache")
    assert hit != first  # the source differs
    assert MOBILE_NO not in repr(hit)  # masked: decisions end up in logs


def test_decision_is_not_hashable():
    """Decisions compare by value but are mutable-looking records, not dict keys."""
    with pytest.raises(TypeError):
        hash(Decision(MOBILE_NO, M, "gw", "cache"))


@pytest.mark.parametrize(
    "bad", ["", "12345", "1390000000", "139000000012", "abc", "23900000001", "10000000000", None]
)
def test_invalid_number_raises_before_any_lookup(cache, clock, bad):
    """An invalid number is the caller's error: InvalidNumber, no query spent, nothing cached."""
    client = FakeClient()
    router = make_router(client, cache, clock)
    with pytest.raises(InvalidNumber):
        router.route(bad)
    assert client.calls == []
    assert len(cache) == 0
    assert router.stats()["errors"] == {}


def test_deadline_must_be_positive():
    """A router with no time to answer is a configuration error."""
    with pytest.raises(ConfigurationError):
        Router(FakeClient(), {M: "m"}, deadline=0)


# -- gateways ------------------------------------------------------------------------------


def test_gateways_keyed_by_carrier_or_chinese_name(cache, clock):
    """Gateway keys may be Carrier members or any spelling Carrier.parse() reads."""
    gw = {Carrier.MOBILE: "m", "联通": "u", "中国电信": "t", "CBN": "b"}
    client = FakeClient()
    router = make_router(client, cache, clock, gw)
    got = [router.route(n).gateway for n in (MOBILE_NO, UNICOM_NO, TELECOM_NO, BROADNET_NO)]
    assert got == ["m", "u", "t", "b"]


def test_gateway_values_may_be_anything(cache, clock):
    """A gateway is returned as given: an object, a product code, a callable."""
    channel = object()
    router = make_router(FakeClient(), cache, clock, {M: channel, U: 42})
    assert router.route(MOBILE_NO).gateway is channel
    assert router.route(UNICOM_NO).gateway == 42


def test_two_keys_for_one_operator_are_refused():
    """Two spellings of one operator (中国移动, CMCC) are ambiguous, so refused."""
    with pytest.raises(ConfigurationError, match="CMCC: 移动 has a gateway already"):
        Router(FakeClient(), {"中国移动": "a", "CMCC": "b"})


def test_non_text_gateway_key_is_refused():
    """A key that is neither an operator nor a name is a configuration error."""
    with pytest.raises(ConfigurationError):
        Router(FakeClient(), {42: "a"})  # type: ignore[dict-item]


def test_no_gateway_and_no_default_is_no_route(cache, clock):
    """An operator with no gateway and no default raises NoRoute, naming the operator."""
    router = make_router(FakeClient(), cache, clock, {M: "m"})
    with pytest.raises(NoRoute, match="电信"):
        router.route(TELECOM_NO)


def test_default_gateway(cache, clock):
    """The default catches operators without a gateway of their own."""
    router = make_router(FakeClient(), cache, clock, {M: "m"}, default="any")
    assert router.route(TELECOM_NO).gateway == "any"
    assert router.route(MOBILE_NO).gateway == "m"


# -- virtual operators -----------------------------------------------------------------------


def virtual_client() -> FakeClient:
    """Return a client that answers VIRTUAL_NO as an MVNO number on 移动's network."""
    return FakeClient({VIRTUAL_NO: info(VIRTUAL_NO, "移动", res=3)})


def test_virtual_host_routes_by_host_network(cache, clock):
    """virtual="host" (the default) routes an MVNO number by Now_isp."""
    router = make_router(virtual_client(), cache, clock)
    assert router.virtual == "host"
    d = router.route(VIRTUAL_NO)
    assert (d.carrier, d.gateway) == (M, "gw-mobile")
    assert d.info is not None
    assert d.info.virtual


def test_virtual_reject_raises_no_route_every_time(cache, clock):
    """virtual="reject" refuses MVNO numbers, from the upstream and from the cache alike."""
    client = virtual_client()
    router = make_router(client, cache, clock, virtual="reject")
    with pytest.raises(NoRoute, match="virtual"):
        router.route(VIRTUAL_NO)
    with pytest.raises(NoRoute, match="virtual"):
        router.route(VIRTUAL_NO)
    assert client.calls == [VIRTUAL_NO]  # the answer was cached: refusing costs no query
    assert router.route(MOBILE_NO).gateway == "gw-mobile"


def test_virtual_gateway_key(cache, clock):
    """virtual="mvno" sends MVNO numbers to gateways["mvno"], others by operator."""
    gw = {M: "m", U: "u", "mvno": "virtual-channel"}
    router = make_router(virtual_client(), cache, clock, gw, virtual="mvno")
    assert router.route(VIRTUAL_NO).gateway == "virtual-channel"
    assert router.route(MOBILE_NO).gateway == "m"


def test_virtual_key_must_exist():
    """A virtual policy that is neither host, reject nor a gateway key is refused."""
    with pytest.raises(ConfigurationError, match="mvno"):
        Router(FakeClient(), {M: "m"}, virtual="mvno")


def test_virtual_policy_applies_to_segment_fallback(cache, clock):
    """When the lookup fails, a virtual segment still goes to the virtual channel."""
    client = FakeClient(script=[api_error(-8)])
    router = make_router(client, cache, clock, {M: "m", "mvno": "v"}, virtual="mvno")
    d = router.route(VIRTUAL_NO)
    assert (d.source, d.gateway) == ("fallback", "v")


def test_virtual_reject_applies_to_segment_fallback(cache, clock):
    """virtual="reject" refuses a virtual segment even when the lookup failed."""
    client = FakeClient(script=[api_error(-8)])
    router = make_router(client, cache, clock, virtual="reject")
    with pytest.raises(NoRoute, match="virtual"):
        router.route(VIRTUAL_NO)


# -- rules --------------------------------------------------------------------------------------


HUBEI_TELECOM = info(TELECOM_NO, "电信", area="湖北-武汉")
BEIJING_TELECOM = info(UNICOM_NO, "电信", area="北京-北京")  # ported from 联通
HUBEI_MOBILE = info(MOBILE_NO, "移动", area="湖北省-宜昌")


def rules_client() -> FakeClient:
    """Return a client with answers that tell the rules apart."""
    return FakeClient(
        {
            TELECOM_NO: HUBEI_TELECOM,
            UNICOM_NO: BEIJING_TELECOM,
            MOBILE_NO: HUBEI_MOBILE,
            VIRTUAL_NO: info(VIRTUAL_NO, "移动", res=4, area="北京-北京"),
        }
    )


def test_first_matching_rule_wins(cache, clock):
    """Rules are tried in order; a broader later rule does not shadow an earlier one."""
    rules = [
        Rule("hubei-telecom", carrier="电信", province="湖北"),
        Rule("telecom", carrier=Carrier.TELECOM),
        Rule("never", carrier="电信", province="湖北"),
    ]
    router = make_router(rules_client(), cache, clock, rules=rules)
    assert router.route(TELECOM_NO).gateway == "hubei-telecom"
    assert router.route(UNICOM_NO).gateway == "telecom"
    assert router.route(MOBILE_NO).gateway == "gw-mobile"  # no rule: by operator


def test_rule_province_ignores_sheng_suffix(cache, clock):
    """湖北省 and 湖北 name one province, in a rule and in an answer."""
    router = make_router(
        rules_client(), cache, clock, rules=[Rule("hb", province=["湖北省", "广东"])]
    )
    assert router.route(MOBILE_NO).gateway == "hb"  # answer says 湖北省-宜昌
    assert router.route(TELECOM_NO).gateway == "hb"
    assert router.route(UNICOM_NO).gateway == "gw-telecom"


@pytest.mark.parametrize(
    ("written", "area"),
    [
        ("广西壮族自治区", "广西-南宁"),
        ("内蒙古自治区", "内蒙古-呼和浩特"),
        ("新疆维吾尔自治区", "新疆-乌鲁木齐"),
        ("宁夏回族自治区", "宁夏-银川"),
        ("西藏", "西藏自治区-拉萨"),
        ("北京市", "北京-北京"),
    ],
)
def test_rule_province_reads_official_region_names(cache, clock, written, area):
    """A rule naming a region by its official name matches the vendor's short form, and back."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "移动", area=area)})
    router = make_router(client, cache, clock, rules=[Rule("region", province=written)])
    assert router.route(MOBILE_NO).gateway == "region"


def test_rule_carrier_collection(cache, clock):
    """A rule's carrier may be a collection of operators."""
    router = make_router(rules_client(), cache, clock, rules=[Rule("mu", carrier=["移动", U])])
    assert router.route(MOBILE_NO).gateway == "mu"
    assert router.route(TELECOM_NO).gateway == "gw-telecom"


def test_rule_on_ported(cache, clock):
    """ported=True matches only answers the vendor marks as ported (res 1), False the others."""
    rules = [Rule("ported", ported=True), Rule("home", ported=False)]
    router = make_router(rules_client(), cache, clock, rules=rules)
    assert router.route(UNICOM_NO).gateway == "ported"
    assert router.route(TELECOM_NO).gateway == "home"


def test_rule_on_virtual(cache, clock):
    """virtual=True matches MVNO answers (res 3 and 4) only."""
    router = make_router(rules_client(), cache, clock, rules=[Rule("v", virtual=True)])
    assert router.route(VIRTUAL_NO).gateway == "v"
    assert router.route(MOBILE_NO).gateway == "gw-mobile"


def test_rules_all_conditions_must_match(cache, clock):
    """A rule with several conditions needs them all."""
    rule = Rule("x", carrier="电信", province="北京", ported=True, virtual=False)
    router = make_router(rules_client(), cache, clock, rules=[rule])
    assert router.route(UNICOM_NO).gateway == "x"
    assert router.route(TELECOM_NO).gateway == "gw-telecom"


def test_no_rule_no_gateway_no_default_is_no_route(cache, clock):
    """When no rule matches and the operator has no gateway nor default: NoRoute."""
    router = make_router(
        rules_client(), cache, clock, {M: "m"}, rules=[Rule("hb", province="湖北")]
    )
    assert router.route(TELECOM_NO).gateway == "hb"
    with pytest.raises(NoRoute):
        router.route(UNICOM_NO)


def test_rules_fall_through_to_default(cache, clock):
    """When no rule matches and the operator has no gateway, the default is used."""
    router = make_router(
        rules_client(), cache, clock, {}, default="dflt", rules=[Rule("hb", province="湖北")]
    )
    assert router.route(UNICOM_NO).gateway == "dflt"


def test_rule_with_unknown_operator_is_refused():
    """A rule naming no known operator is a configuration error, not a rule that never matches."""
    with pytest.raises(ConfigurationError, match="火星"):
        Rule("x", carrier="火星移动")


def test_segment_fallback_does_not_match_province_or_port_rules(cache, clock):
    """A segment-table answer knows no province or port, so such rules do not match it."""
    client = FakeClient(script=[api_error(-8)])
    rules = [Rule("hb", province="湖北"), Rule("p", ported=False), Rule("m", carrier="移动")]
    router = make_router(client, cache, clock, rules=rules)
    d = router.route(MOBILE_NO)
    assert (d.source, d.gateway) == ("fallback", "m")


# -- the fallback chain ---------------------------------------------------------------------------


def test_fallback_chain(cache, clock):
    """Fresh cache, then upstream, then stale cache, then the segment table, each labelled."""
    ported = info(MOBILE_NO, "电信")  # the segment table would say 移动
    client = FakeClient({MOBILE_NO: ported})
    router = make_router(client, cache, clock)

    up = router.route(MOBILE_NO)
    assert (up.source, up.carrier, up.reason) == ("upstream", T, None)
    hit = router.route(MOBILE_NO)
    assert (hit.source, hit.carrier, hit.reason) == ("cache", T, None)

    clock.advance(TTL + 2)
    client.script.append(api_error(-8))
    stale = router.route(MOBILE_NO)
    assert (stale.source, stale.carrier) == ("stale", T)
    assert stale.reason is not None
    assert "ServiceError -8" in stale.reason
    assert stale.info == ported

    clock.advance(STALE_TTL)
    client.script.append(api_error(-8))
    fb = router.route(MOBILE_NO)
    assert (fb.source, fb.carrier, fb.gateway, fb.info) == ("fallback", M, "gw-mobile", None)
    assert fb.reason is not None
    assert "ServiceError" in fb.reason

    assert len(client.calls) == 3
    stats = router.stats()
    assert stats["decisions"] == {"cache": 1, "upstream": 1, "stale": 1, "fallback": 1}
    assert stats["fallback_reasons"] == {"ServiceError -8": 2}
    assert stats["errors"] == {"-8": 2}


def test_stale_refreshes_when_upstream_answers(cache, clock):
    """An expired answer is not served while the upstream answers: the fresh answer wins."""
    client = FakeClient(script=[info(MOBILE_NO, "电信"), info(MOBILE_NO, "联通")])
    router = make_router(client, cache, clock)
    router.route(MOBILE_NO)
    clock.advance(TTL + 2)
    d = router.route(MOBILE_NO)
    assert (d.source, d.carrier) == ("upstream", U)
    assert router.route(MOBILE_NO).carrier == U


def test_not_found_falls_back_and_is_cached_briefly(cache, clock):
    """NumberNotFound (-4): segment-table fallback, then no query until negative_ttl ends."""
    client = FakeClient(script=[api_error(-4)])
    router = make_router(client, cache, clock)
    first = router.route(MOBILE_NO)
    assert (first.source, first.carrier) == ("fallback", M)
    assert first.reason is not None
    assert "NumberNotFound -4" in first.reason
    again = router.route(MOBILE_NO)
    assert (again.source, again.reason) == ("fallback", "number not found (cached)")
    assert len(client.calls) == 1
    clock.advance(NEGATIVE_TTL + 2)
    assert router.route(MOBILE_NO).source == "upstream"
    assert len(client.calls) == 2


@pytest.mark.parametrize("code", [1, -2, -3])
def test_request_rejected_falls_back(cache, clock, code):
    """RequestRejected falls back to the segment table and caches nothing."""
    client = FakeClient(script=[api_error(code)])
    router = make_router(client, cache, clock)
    assert router.route(MOBILE_NO).source == "fallback"
    assert MOBILE_NO not in cache
    assert router.stats()["errors"] == {str(code): 1}


def test_client_bug_becomes_a_fallback(cache, clock):
    """A client raising a foreign exception does not fail the send; it is counted by type."""
    client = FakeClient(script=[RuntimeError("boom")])
    router = make_router(client, cache, clock)
    d = router.route(MOBILE_NO)
    assert (d.source, d.carrier) == ("fallback", M)
    assert d.reason is not None
    assert "TransportError" in d.reason
    assert router.stats()["errors"] == {"RuntimeError": 1}


def test_answer_without_current_operator_is_a_failure(cache, clock):
    """An answer naming no current operator is not cached and falls back."""
    client = FakeClient(script=[CarrierInfo(MOBILE_NO, 0, "", None, None)])
    router = make_router(client, cache, clock)
    assert router.route(MOBILE_NO).source == "fallback"
    assert MOBILE_NO not in cache


def test_segment_without_operator_uses_default(cache, clock):
    """A segment held by none of the four falls back to the default, or NoRoute without one."""
    client = FakeClient(script=[api_error(-8), api_error(-8)])
    router = make_router(client, cache, clock, {M: "m"}, default="dflt")
    sat = router.route(SATELLITE_NO)
    assert (sat.source, sat.gateway) == ("fallback", "dflt")
    strict = make_router(client, cache, clock, {M: "m"})
    with pytest.raises(NoRoute, match="fallback after"):
        strict.route(UNICOM_NO)


class BrokenCache:
    """A backend whose every call fails, as a dead Redis would."""

    def get(self, number):
        raise ConnectionError("down")

    def set(self, number, answer):
        raise ConnectionError("down")

    def delete(self, number):
        raise ConnectionError("down")


def test_broken_cache_does_not_fail_a_send(clock):
    """A cache that raises is bypassed: the upstream answers and the errors are counted."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = Router(client, {T: "t"}, cache=BrokenCache(), clock=clock)
    d = router.route(MOBILE_NO)
    assert (d.source, d.gateway) == ("upstream", "t")
    assert router.stats()["errors"] == {"cache": 2}  # the read and the write
    assert router.stats()["cache_size"] is None


def test_timeout_comes_from_the_deadline(cache, clock):
    """A client that takes timeout= gets the deadline less the router's headroom."""
    client = BudgetedClient()
    router = make_router(client, cache, clock, deadline=0.25)
    router.route(MOBILE_NO)
    router.route(UNICOM_NO, deadline=0.1)
    # Headroom: 10 % of what is left, at most 20 ms, kept for the fallback.
    assert client.timeouts == [pytest.approx(0.23), pytest.approx(0.09)]


def test_no_budget_left_makes_no_call(cache, clock):
    """A call whose deadline is already spent falls back without asking the upstream."""
    client = BudgetedClient()
    router = make_router(client, cache, clock)
    d = router.route(MOBILE_NO, deadline=-1.0)
    assert (d.source, d.carrier) == ("fallback", M)
    assert d.reason is not None
    assert "deadline" in d.reason
    assert client.calls == []
    assert router.breaker.state == "closed"


def test_default_cache_runs_on_the_router_clock(clock):
    """Router(clock=...) without a cache gives the default MemoryCache the same clock."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = Router(client, {T: "t", M: "m"}, clock=clock)
    router.route(MOBILE_NO)
    assert router.route(MOBILE_NO).source == "cache"
    clock.advance(8 * 86400)  # past the default week
    assert router.route(MOBILE_NO).source == "upstream"


# -- stats ----------------------------------------------------------------------------------------


def test_stats_add_up(cache, clock):
    """Decisions by source sum to the routes made; hits + misses == routes; errors by code."""
    client = FakeClient(
        {
            MOBILE_NO: info(MOBILE_NO, "电信"),
            UNICOM_NO: info(UNICOM_NO, "联通"),
        },
        script=[],
    )
    router = make_router(client, cache, clock)
    routes = 0
    for n in (MOBILE_NO, MOBILE_NO, UNICOM_NO, MOBILE_NO, UNICOM_NO):
        router.route(n)
        routes += 1
    client.script.extend([api_error(-8), api_error(-4)])
    router.route(TELECOM_NO)  # fallback after -8
    router.route(BROADNET_NO)  # fallback after -4
    router.route(BROADNET_NO)  # fallback: cached negative
    routes += 3
    clock.advance(TTL + 2)
    client.script.append(api_error(-8))
    router.route(MOBILE_NO)  # stale
    routes += 1

    stats = router.stats()
    assert stats["decisions"] == {"cache": 3, "upstream": 2, "stale": 1, "fallback": 3}
    assert sum(stats["decisions"].values()) == routes
    assert stats["hits"] + stats["misses"] == routes
    assert stats["hits"] == 3
    assert stats["upstream_calls"] == len(client.calls) == 5
    assert stats["errors"] == {"-8": 2, "-4": 1}
    assert stats["breaker"] == "closed"
    assert stats["cache_size"] == len(cache)


def test_no_route_is_not_counted_as_a_decision(cache, clock):
    """A route() that raises NoRoute made no decision, whichever source answered."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")}, script=[])
    router = make_router(client, cache, clock, {M: "m"})
    for _ in range(2):  # upstream, then cache
        with pytest.raises(NoRoute):
            router.route(MOBILE_NO)
    client.script.append(api_error(-8))
    with pytest.raises(NoRoute):
        router.route(TELECOM_NO)  # segment fallback
    stats = router.stats()
    assert stats["decisions"] == {"cache": 0, "upstream": 0, "stale": 0, "fallback": 0}
    assert stats["hits"] + stats["misses"] == 0


def test_memo_follows_configuration_changes(cache, clock):
    """Changing router.default after some routes takes effect for cached answers too."""
    client = FakeClient({TELECOM_NO: info(TELECOM_NO, "电信")})
    router = make_router(client, cache, clock, {M: "m"}, default="old")
    assert router.route(TELECOM_NO).gateway == "old"
    router.default = "new"
    assert router.route(TELECOM_NO).gateway == "new"


def test_cached_answer_codes_are_what_the_client_said(cache, clock):
    """The cache holds the encoded answer, so any backend can store it compactly."""
    answer = info(MOBILE_NO, "电信", area="湖北-宜昌")
    router = make_router(FakeClient({MOBILE_NO: answer}), cache, clock)
    router.route(MOBILE_NO)
    assert cache.get(MOBILE_NO) == (codec.encode(answer), True)


def test_rules_and_virtual_changes_apply_to_cached_answers(cache, clock):
    """New rules or a new virtual policy apply to numbers already cached."""
    client = FakeClient({VIRTUAL_NO: info(VIRTUAL_NO, "移动", res=3)})
    router = make_router(client, cache, clock, {M: "m"})
    assert router.route(VIRTUAL_NO).gateway == "m"
    router.virtual = "reject"
    with pytest.raises(NoRoute):
        router.route(VIRTUAL_NO)
    # A gateway of their own: the key and the virtual= that uses it go in together.
    router.policy = router.policy.copy(gateways={M: "m", "mvno": "v"}, virtual="mvno")
    assert router.route(VIRTUAL_NO).gateway == "v"
    router.rules = [Rule("r", carrier="移动")]
    assert router.route(VIRTUAL_NO).gateway == "r"
    assert router.rules == (Rule("r", carrier="移动"),)
    assert client.calls == [VIRTUAL_NO]


def test_virtual_setter_validates(cache, clock):
    """Setting an unknown virtual policy later is refused like at construction."""
    router = make_router(FakeClient(), cache, clock)
    with pytest.raises(ConfigurationError):
        router.virtual = "mvno"
    assert router.virtual == "host"


def test_route_picked_during_a_settings_change_is_not_kept(cache, clock):
    """A route chosen under the old rules while they are replaced is not memoised for later."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "移动")})
    router = make_router(client, cache, clock)

    class RacingRule:
        """A rule whose check runs while another thread replaces the rules."""

        gateway = "old-rule"

        def matches(self, *facts):
            router.rules = []
            return True

    router.rules = [RacingRule()]  # type: ignore[list-item]
    assert router.route(MOBILE_NO).gateway == "old-rule"  # picked under the old rules
    assert router.route(MOBILE_NO).gateway == "gw-mobile"
    assert router.route(MOBILE_NO).gateway == "gw-mobile"


class _StuckCache(MemoryCache):
    """A cache whose every call blocks for ``delay`` seconds (a Redis dripping bytes)."""

    delay = 2.0

    def get(self, number):
        """Block, then answer."""
        import time as _time

        _time.sleep(self.delay)
        return super().get(number)

    def set(self, number, answer):
        """Block, then store."""
        import time as _time

        _time.sleep(self.delay)
        super().set(number, answer)


def test_a_blocking_cache_costs_a_route_its_deadline_not_more():
    """Cache I/O is inside the budget: a cache that blocks for 2 s costs a 0.2 s route 0.2 s."""
    import time as _time

    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})

    class NotMemory(_StuckCache):
        """Seen by the router as a cache that can block (not the in-process MemoryCache)."""

    router = Router(client, {M: "m", T: "t"}, cache=NotMemory(), deadline=0.2)
    router._io.inline = False  # what CacheIO decides for every cache but MemoryCache
    started = _time.perf_counter()
    d = router.route(MOBILE_NO)
    took = _time.perf_counter() - started
    router.close()
    assert took < 0.2 + 0.05
    assert d.source in ("upstream", "fallback")
    assert router.stats()["errors"].get("cache", 0) >= 1


def test_a_segment_the_table_does_not_know_yet_is_asked():
    """A mobile-range number in a segment the table calls unallocated is looked up, not refused."""
    from smsroute import segments as _segments

    number = "19400000001"  # 194: unallocated in the shipped table; MIIT keeps allocating
    assert _segments.default_table().lookup(number).kind == "unallocated"
    client = FakeClient({number: info(number, "电信", initial="电信")})
    router = Router(client, {T: "t"}, default="d")
    d = router.route(number)
    assert (d.source, d.carrier, d.gateway) == ("upstream", T, "t")
    # The vendor down: the segment table knows no operator, so the default takes it.
    down = Router(FakeClient(script=[api_error(-8)] * 3), {T: "t"}, default="d")
    assert (down.route(number).source, down.route(number).gateway) == ("fallback", "d")
    # The vendor's "not a valid number" (-3, free) settles it: refused, not sent to the default.
    for code in (1, -2, -3):
        rejected = Router(FakeClient(script=[api_error(code)]), {T: "t"}, default="d")
        with pytest.raises(InvalidNumber, match=f"the vendor says \\({code}\\)"):
            rejected.route(number)
    # The old strictness on request; numbers outside the mobile range are always refused.
    with pytest.raises(InvalidNumber):
        Router(client, {T: "t"}, unknown_segments="reject").route(number)
    with pytest.raises(InvalidNumber):
        router.route("12000000001")
