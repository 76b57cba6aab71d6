"""Tests for Carrier: the four operators and the spellings that name them."""

from __future__ import annotations

import pytest

from smsroute import Carrier

SPELLINGS = {
    Carrier.MOBILE: [
        "移动",
        "中国移动",
        "China Mobile",
        "china mobile",
        "CHINA MOBILE",
        "CMCC",
        "cmcc",
        "移动虚拟运营商",
        "中国移动虚拟运营商",
        " 移动 ",
        "China-Mobile",
        "MOBILE",
    ],
    Carrier.UNICOM: ["联通", "中国联通", "China Unicom", "CUCC", "联通虚拟运营商", "联通虚拟"],
    Carrier.TELECOM: ["电信", "中国电信", "China Telecom", "CTCC", "电信虚拟运营商", "电信虚拟"],
    Carrier.BROADNET: ["广电", "中国广电", "China Broadnet", "CBN", "广电虚拟运营商"],
}


@pytest.mark.parametrize(
    ("text", "carrier"),
    [(text, carrier) for carrier, texts in SPELLINGS.items() for text in texts],
)
def test_parse_spellings(text, carrier):
    """Every spelling an API or a person uses parses to its operator."""
    assert Carrier.parse(text) is carrier


@pytest.mark.parametrize(
    "text",
    ["", " ", "未知", "移不动", "Mobile Unicom", "中国铁通", "虚拟运营商", "China", "cmccc", "1"],
)
def test_parse_unknown_text_is_none(text):
    """Text that names no operator parses to None, not to a guess."""
    assert Carrier.parse(text) is None


@pytest.mark.parametrize("value", [None, 1, 1.0, b"\xe7\xa7\xbb\xe5\x8a\xa8", ["移动"], object()])
def test_parse_non_str_is_none(value):
    """Values that are not text parse to None instead of raising."""
    assert Carrier.parse(value) is None


def test_parse_is_stable_on_repeat():
    """A cached spelling parses the same the second time, known or unknown."""
    assert Carrier.parse("中国电信") is Carrier.parse("中国电信") is Carrier.TELECOM
    assert Carrier.parse("nonsense") is None
    assert Carrier.parse("nonsense") is None


def test_values_and_members():
    """The enum has exactly the four operators, valued by their short Chinese names."""
    assert {c.name: c.value for c in Carrier} == {
        "MOBILE": "移动",
        "UNICOM": "联通",
        "TELECOM": "电信",
        "BROADNET": "广电",
    }
    assert str(Carrier.TELECOM) == "电信"
    assert Carrier("联通") is Carrier.UNICOM
    assert Carrier.parse(Carrier.BROADNET) is Carrier.BROADNET


def test_codes_round_trip():
    """Each operator's small integer code maps back to it, and 0 means no operator."""
    assert sorted(c.code for c in Carrier) == [1, 2, 3, 4]
    for carrier in Carrier:
        assert Carrier.from_code(carrier.code) is carrier
    assert Carrier.from_code(0) is None
