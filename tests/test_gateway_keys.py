"""Gateway keys are checked at construction: a key nothing can route to is refused with a hint."""

from __future__ import annotations

import asyncio

import pytest
from _fakes import VIRTUAL_NO, FakeClient, M, T, U, info

from smsroute import AsyncRouter, ConfigurationError, Router, RoutingPolicy, Rule
from smsroute.carrier import Carrier
from smsroute.config import load_settings

GW = {M: "CMPP", U: "SGIP", T: "SMGP"}


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("连通", 'did you mean "联通"?'),
        ("Moble", 'did you mean "mobile" (移动)?'),
        ("电线", 'did you mean "电信"?'),
        ("teleocm", 'did you mean "telecom" (电信)?'),
        ("中国移东", 'did you mean "中国移动" (移动)?'),
        ("defualt", 'did you mean "default"?'),
        ("China Mobil", 'did you mean "China Mobile" (移动)?'),  # as one would type it
    ],
)
@pytest.mark.parametrize("build", ["policy", "router", "async"])
def test_a_misspelt_key_is_refused_with_a_hint(key, hint, build):
    """A key that is no operator and that nothing uses fails at construction, with a hint."""
    gateways = {**GW, key: "X"}
    make = {
        "policy": RoutingPolicy,
        "router": lambda g: Router(FakeClient(), g),
        "async": lambda g: AsyncRouter(FakeClient(), g),
    }[build]
    with pytest.raises(ConfigurationError) as caught:
        make(gateways)
    message = str(caught.value)
    assert repr(key) in message
    assert message.endswith(hint)


def test_a_refused_key_costs_no_lookup():
    """The typo is caught before any number is routed: nothing is paid for."""
    client = FakeClient()
    with pytest.raises(ConfigurationError):
        Router(client, {"移动": "CMPP", "连通": "SGIP"})
    assert client.calls == []


@pytest.mark.parametrize(
    "key", ["unicom ", "UNICOM", "China Unicom", "中国联通", "CUCC", Carrier.UNICOM]
)
def test_every_spelling_parse_reads_is_a_key(key):
    """What Carrier.parse reads (spaces and case do not count) is an operator key."""
    assert RoutingPolicy({key: "SGIP"}).gateways == {Carrier.UNICOM: "SGIP"}


def test_an_unused_extra_key_says_how_to_use_it():
    """An extra key with no near spelling names the two ways to use it."""
    with pytest.raises(ConfigurationError, match=r"virtual='mvno' or in a rule"):
        RoutingPolicy({**GW, "mvno": "MV"})


def test_the_key_virtual_names_is_allowed():
    """virtual="mvno" uses the "mvno" key: the key is an extra gateway, not a typo."""
    policy = RoutingPolicy({**GW, "mvno": "MV"}, virtual="mvno")
    assert policy.gateways["mvno"] == "MV"


def test_a_misspelt_virtual_key_gets_a_hint():
    """virtual= naming no key points at the key it probably means."""
    with pytest.raises(ConfigurationError, match='did you mean "mvno"'):
        RoutingPolicy({**GW, "mvno": "MV"}, virtual="mnvo")


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("GD-DIRECT", Rule("GD-DIRECT", carrier="电信", province="广东")),  # the rule names the key
        ("desk", Rule("DESK-GW", ported=True)),  # the rule sends to the key's gateway
    ],
)
def test_keys_for_rules_are_allowed(key, rule):
    """An extra gateway that a rule sends to (by its key or its value) is allowed."""
    policy = RoutingPolicy({**GW, key: "DESK-GW" if key == "desk" else "GD"}, rules=[rule])
    assert key in policy.gateways


def test_a_rule_that_names_an_extra_key_routes_to_its_gateway():
    """Rule(gateway="gd") with {"gd": "GD-CT-DIRECT"} sends to GD-CT-DIRECT, not to "gd"."""
    policy = RoutingPolicy(
        {**GW, "gd": "GD-CT-DIRECT"}, rules=[Rule("gd", carrier="电信", province="广东")]
    )
    assert policy.pick(Carrier.TELECOM, "广东", False, False) == "GD-CT-DIRECT"
    assert policy.pick(Carrier.TELECOM, "湖北", False, False) == GW[T]
    # A rule's gateway that reads as an operator is the gateway id itself, as it always was.
    literal = RoutingPolicy(GW, rules=[Rule("电信", province="广东")])
    assert literal.pick(Carrier.MOBILE, "广东", False, False) == "电信"


def test_toml_virtual_typo_gets_the_hint(tmp_path):
    """A misspelt [routing] virtual in the TOML file names its table and the key it meant."""
    path = tmp_path / "smsroute.toml"
    path.write_text(
        '[routing]\nvirtual = "mvn"\n[gateways]\n"移动" = "CMPP"\nmvno = "MVNO-GW"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path, environ={})
    assert "[routing] virtual: 'mvn' is not" in str(caught.value)
    assert str(caught.value).endswith('did you mean "mvno"?')


def test_a_key_close_to_a_rules_gateway_gets_that_hint():
    """A key one letter off a rule's gateway points at the rule's spelling."""
    rule = Rule("GD-DIRECT", province="广东")
    with pytest.raises(ConfigurationError, match='did you mean "GD-DIRECT"'):
        RoutingPolicy({**GW, "GD-DIRCT": "GD"}, rules=[rule])


def test_the_default_key_is_the_default_gateway():
    """gateways["default"] is the default gateway (any case); given twice, differently, refused."""
    policy = RoutingPolicy({**GW, "Default": "CMPP"})
    assert (policy.default, "default" in policy.gateways) == ("CMPP", False)
    assert RoutingPolicy({**GW, "default": "CMPP"}, default="CMPP").default == "CMPP"
    with pytest.raises(ConfigurationError, match="default gateway given twice"):
        RoutingPolicy({**GW, "default": "CMPP"}, default="OTHER")
    assert Router(FakeClient(), {**GW, "default": "CMPP"}).route("19200000000").gateway == "CMPP"


def test_setters_rerun_the_check_on_the_final_settings():
    """The virtual and rules setters re-check: leaving a key unused is refused, nothing changes."""
    router = Router(FakeClient(), {**GW, "mvno": "MV"}, virtual="mvno")
    with pytest.raises(ConfigurationError, match="'mvno'"):
        router.virtual = "host"
    assert router.virtual == "mvno"
    router.policy = router.policy.copy(gateways=GW, virtual="host")  # both at once: fine
    assert router.virtual == "host"

    router = Router(FakeClient(), {**GW, "desk": "D"}, rules=[Rule("desk", ported=True)])
    with pytest.raises(ConfigurationError, match="'desk'"):
        router.rules = []
    assert router.rules == (Rule("desk", ported=True),)


def test_the_virtual_setter_on_a_router_built_for_it():
    """A router built with an "mvno" key and virtual="mvno" moves to "reject" without the key."""
    client = FakeClient({VIRTUAL_NO: info(VIRTUAL_NO, "移动", res=3)})
    router = Router(client, {**GW, "mvno": "MV"}, virtual="mvno")
    assert router.route(VIRTUAL_NO).gateway == "MV"
    router.policy = router.policy.copy(gateways=GW, virtual="reject")
    router.policy = router.policy.copy(gateways={**GW, "mvno": "MV2"}, virtual="mvno")
    assert router.route(VIRTUAL_NO).gateway == "MV2"
    assert client.calls == [VIRTUAL_NO]


def test_from_dict_refuses_the_typo_too():
    """RoutingPolicy.from_dict (the TOML [routing] shape) runs the same check."""
    with pytest.raises(ConfigurationError, match='did you mean "联通"'):
        RoutingPolicy.from_dict({"gateways": {"移动": "CMPP", "连通": "SGIP"}})


def test_toml_gateways_typo_is_refused(tmp_path):
    """A [gateways] typo in the TOML file is a configuration error naming the table."""
    path = tmp_path / "smsroute.toml"
    path.write_text('[gateways]\n"移动" = "CMPP"\n"连通" = "SGIP"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path, environ={})
    assert "[gateways]" in str(caught.value)
    assert str(caught.value).endswith('did you mean "联通"?')


def test_async_router_setters_check_alike():
    """AsyncRouter shares the settings code: its virtual setter is checked the same way."""
    router = AsyncRouter(FakeClient(), {**GW, "mvno": "MV"}, virtual="mvno")
    with pytest.raises(ConfigurationError, match="'mvno'"):
        router.virtual = "host"
    asyncio.run(router.aclose())
