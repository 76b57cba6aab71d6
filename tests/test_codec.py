"""Tests for the compact answer codes the caches store."""

from __future__ import annotations

import pytest

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.models import CarrierInfo

CARRIERS = [None, *Carrier]


@pytest.mark.parametrize("current", list(Carrier))
@pytest.mark.parametrize("initial", CARRIERS)
@pytest.mark.parametrize("res", [0, 1, 3, 4])
def test_encode_decode_round_trip(current, initial, res):
    """Every operator pair and res value survives encode() then decode()."""
    answer = CarrierInfo("13900000001", res, "湖北-宜昌", initial, current)
    code = codec.encode(answer)
    assert codec.decode("13900000001", code) == answer
    assert codec.fields(code) == (current, initial, res, "湖北-宜昌")
    assert not codec.is_negative(code)


def test_encode_is_a_small_int_that_keeps_the_area():
    """Two answers differing only in area get different codes that fit in 31 bits."""
    a = codec.encode(CarrierInfo("13900000001", 0, "北京-北京", Carrier.MOBILE, Carrier.MOBILE))
    b = codec.encode(CarrierInfo("13900000001", 0, "上海-上海", Carrier.MOBILE, Carrier.MOBILE))
    assert a != b
    assert 0 <= a < 1 << 31
    assert codec.decode("13900000001", b).area == "上海-上海"  # type: ignore[union-attr]


def test_decode_rebuilds_without_raw():
    """A decoded answer carries the mobile it is asked for and no raw vendor body."""
    code = codec.encode(CarrierInfo("1", 1, "湖北-宜昌", Carrier.MOBILE, Carrier.TELECOM))
    got = codec.decode("13972565391", code)
    assert got is not None
    assert got.mobile == "13972565391"
    assert got.ported
    assert dict(got.raw) == {}


def test_not_found_is_negative_and_decodes_to_none():
    """NOT_FOUND is the one negative code and stands for no answer."""
    assert codec.is_negative(codec.NOT_FOUND)
    assert codec.decode("13900000001", codec.NOT_FOUND) is None
    assert codec.dumps(codec.NOT_FOUND) == "N"


def test_unknown_area_index_reads_as_empty():
    """A code whose area index this process never issued reads as no area, not an IndexError."""
    code = 1 | 1 << 3 | ((codec.MAX_AREAS + 7) << 9)
    assert codec.fields(code) == (Carrier.MOBILE, Carrier.MOBILE, 0, "")
    assert codec.decode("13900000001", code) == CarrierInfo(
        "13900000001", 0, "", Carrier.MOBILE, Carrier.MOBILE
    )


def test_area_table_is_bounded_and_keeps_the_province(monkeypatch):
    """Past MAX_AREAS a new area keeps its province (rules still match) and the table is bounded."""
    monkeypatch.setattr(codec, "MAX_AREAS", len(codec._areas))
    code = codec.encode(CarrierInfo("1", 0, "火星-一号基地", Carrier.MOBILE, Carrier.MOBILE))
    assert codec.fields(code)[3] == "火星"
    assert "火星-一号基地" not in codec._area_ids
    from smsroute import Rule
    from smsroute.core.policy import RoutingPolicy

    policy = RoutingPolicy({"移动": "m"}, rules=(Rule("mars", province="火星"),))
    assert policy.route(code).gateway == "mars"
    monkeypatch.setattr(codec, "_PROVINCE_RESERVE", 0)
    junk = codec.encode(CarrierInfo("1", 0, "木星-二号", Carrier.MOBILE, Carrier.MOBILE))
    assert codec.fields(junk)[3] == ""  # past the reserve too: unknown, never unbounded


@pytest.mark.parametrize("area", ["湖北-宜昌", "", "北京", "新疆-伊犁哈萨克自治州"])
@pytest.mark.parametrize("res", [0, 1, 3, 4])
def test_dumps_loads_round_trip(area, res):
    """dumps() then loads() gives back the same answer, as text and as UTF-8 bytes."""
    code = codec.encode(CarrierInfo("1", res, area, Carrier.MOBILE, Carrier.TELECOM))
    text = codec.dumps(code)
    assert codec.loads(text) == code
    assert codec.loads(text.encode("utf-8")) == code
    assert len(text.encode("utf-8")) <= 3 + len(area.encode("utf-8"))


def test_dumps_loads_not_found():
    """The negative answer survives the text form."""
    assert codec.loads("N") == codec.NOT_FOUND
    assert codec.loads(b"N") == codec.NOT_FOUND


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "1",
        "12",
        "abc",
        "N1",
        "n",
        "901湖北",  # res 9 does not exist
        "201湖北",  # res 2 does not exist
        "151湖北",  # initial operator 5 does not exist
        "118湖北",  # current operator 8 does not exist
        "-11湖北",
        "1 1湖北",
        "011\n",  # not printable
        "011湖北\x00",
        "1²³湖北",  # str.isdigit() is true for superscripts, int() refuses them
        "1١١湖北",  # Arabic-Indic digits
        "１１１湖北",  # full-width digits are not the text form
        b"\xff\xfe",
        b"01\xe6",
    ],
)
def test_loads_rejects_junk(junk):
    """loads() answers None for anything dumps() could not have written, and never raises."""
    assert codec.loads(junk) is None
