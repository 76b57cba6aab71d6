"""Tests for the offline segment table: the shipped rows, user tables, validation."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smsroute
from smsroute import (
    Carrier,
    CarrierClient,
    ConfigurationError,
    InvalidNumber,
    MemoryCache,
    NoRoute,
    Router,
    initial_carrier,
    normalize,
    segments,
)
from smsroute.segments import Segment, SegmentTable

M, U, T, B = Carrier.MOBILE, Carrier.UNICOM, Carrier.TELECOM, Carrier.BROADNET
HEADER = "segment\toperator\tkind\thost\tlength\tconfidence\tholder\tsources\n"


def _pad(prefix: str) -> str:
    return prefix + "0" * (11 - len(prefix))


@pytest.mark.parametrize(
    ("prefix", "carrier"),
    [
        ("1349", T),  # satellite, now 中国电信; not the 134 → 移动 rule
        *[(f"134{d}", M) for d in range(9)],
        *[(f"1740{d}", T) for d in range(6)],  # 天通 satellite
        *[(f"174{n:02d}", None) for n in range(6, 13)],  # MIIT emergency centre
        ("17413", None),
        ("1749", None),  # Inmarsat, not one of the four
        ("162", T),
        ("165", M),
        ("167", U),
        ("1700", T),
        ("1701", T),
        ("1702", T),
        ("1703", M),
        ("1705", M),
        ("1706", M),
        ("1704", U),
        ("1707", U),
        ("1708", U),
        ("1709", U),
        ("171", U),
        ("1719", U),
        ("192", B),
        ("1610", B),
        ("1611", None),
        ("142", None),
        ("154", None),
        ("194", None),
        ("139", M),
        ("186", U),
        ("199", T),
        ("172", M),
        ("145", U),
        ("147", M),
        ("149", T),
        ("1440", M),
        ("1410", T),
    ],
)
def test_initial_carrier_shipped_table(prefix, carrier):
    """The shipped table answers the operator SEGMENTS.md gives for each contested segment."""
    assert initial_carrier(_pad(prefix)) is carrier


def test_initial_carrier_accepts_pasted_text():
    """initial_carrier normalises pasted text before the lookup."""
    assert initial_carrier("+86 134 9000 0000") is T
    assert initial_carrier("（＋８６）１３４８－００００－０００") is M


def test_initial_carrier_rejects_non_numbers():
    """Text that is not a phone number at all raises InvalidNumber."""
    with pytest.raises(InvalidNumber):
        initial_carrier("hello")


def test_virtual_rows_know_their_host():
    """MVNO rows are marked virtual and name their host network."""
    row = segments.lookup("17040000000")
    assert row is not None
    assert row.virtual
    assert row.host is U
    assert row.carrier is U


def test_shipped_header_names_sources_and_date():
    """The shipped file's comment header names its sources and the date it was compiled."""
    text = resources.files("smsroute").joinpath("data/segments.tsv").read_text("utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", header)
    assert "sources" in header.lower()
    for key in ("S1", "S2", "S8", "S9"):
        assert re.search(rf"^#\s+{key}\s+\S", header, re.MULTILINE), key


def test_load_and_install_user_table(tmp_path, restore_segments):
    """A table loaded from a path can be installed and then drives normalize and lookups."""
    path = tmp_path / "newer.tsv"
    path.write_text(
        "# my newer table, 2027-01-01\n"
        + HEADER
        + "139\t移动\tregular\t\t11\n"
        + "1411\t电信\tregular\t\t11\n"
        + "188\t\tvirtual\t联通\t11\n",
        encoding="utf-8",
    )
    table = segments.load(path)
    assert len(table) == 3
    assert [row.prefix for row in table.rows()] == ["139", "1411", "188"]
    with pytest.raises(InvalidNumber, match="unallocated"):
        normalize("14110000000")

    assert segments.install(str(path)) is not table  # a path is loaded afresh
    assert segments.default_table().source == str(path)
    assert normalize("14110000000") == "14110000000"
    assert initial_carrier("14110000000") is T
    assert initial_carrier("18800000000") is U  # a virtual row answers its host
    with pytest.raises(InvalidNumber):
        normalize("13300000000")  # not in the user's table

    assert segments.install(table) is table
    assert segments.default_table() is table
    segments.install(None)
    assert segments.default_table().source == "built-in"
    assert initial_carrier("14110000000") is None


def test_user_table_with_bom_and_crlf(tmp_path):
    """A table saved by a Windows editor (BOM, CRLF line ends) loads like any other."""
    path = tmp_path / "windows.tsv"
    path.write_bytes(
        ("\ufeff" + HEADER + "139\t移动\tregular\t\t11\n").replace("\n", "\r\n").encode()
    )
    table = SegmentTable.from_path(path)
    assert table.initial_carrier("13900000000") is M


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("2x9\t移动\tregular\t\t11\n", "bad segment"),
        ("13\t移动\tregular\t\t11\n", "bad segment"),
        ("139000\t移动\tregular\t\t11\n", "bad segment"),
        ("239\t移动\tregular\t\t11\n", "bad segment"),
        ("１３９\t移动\tregular\t\t11\n", "bad segment"),
        ("139\t移动\tregular\t\t11\n139\t联通\tregular\t\t11\n", "twice"),
        ("139\t移动\tnormal\t\t11\n", "unknown kind"),
        ("139\t移不动\tregular\t\t11\n", "unknown operator"),
        ("139\t\tvirtual\tfoo\t11\n", "unknown host"),
        ("139\t移动\tregular\t\televen\n", "bad length"),
        ("", "no segments"),
        ("# only a comment\n\n", "no segments"),
    ],
)
def test_bad_tables_raise_configuration_error(tmp_path, body, message):
    """A malformed table is refused with ConfigurationError naming the problem."""
    path = tmp_path / "bad.tsv"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        segments.load(path)


def test_install_bad_table_keeps_the_old_one(tmp_path, restore_segments):
    """A failed install leaves the current default table in place."""
    before = segments.default_table()
    path = tmp_path / "bad.tsv"
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(ConfigurationError):
        segments.install(path)
    assert segments.default_table() is before


def test_segment_table_from_rows():
    """A table built in memory validates rows and applies the longest prefix."""
    table = SegmentTable([Segment("174", T, "satellite"), Segment("17406", None, "satellite")])
    assert table.initial_carrier("17405123456") is T
    assert table.initial_carrier("17406123456") is None
    assert table.initial_carrier("18000000000") is None
    with pytest.raises(ConfigurationError):
        SegmentTable([Segment("139", M, "bogus")])


_SHIPPED = segments.default_table().rows()


def _naive_lookup(number: str) -> Segment | None:
    best = None
    for row in _SHIPPED:
        if number.startswith(row.prefix) and (best is None or len(row.prefix) > len(best.prefix)):
            best = row
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"1[0-9]{10}", fullmatch=True),
        st.sampled_from(_SHIPPED).flatmap(
            lambda row: st.from_regex(
                rf"{row.prefix}[0-9]{{{11 - len(row.prefix)}}}", fullmatch=True
            )
        ),
    )
)
def test_longest_prefix_matches_naive_reference(number):
    """The expanded 5-digit lookup agrees with a naive longest-prefix scan of the shipped rows."""
    expected = _naive_lookup(number)
    assert segments.lookup(number) == expected
    assert initial_carrier(number) is (None if expected is None else expected.carrier)


def test_segments_module_is_reexported():
    """smsroute.segments and smsroute.initial_carrier are the same objects as the module's."""
    assert smsroute.segments is segments
    assert smsroute.initial_carrier is segments.initial_carrier


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("139\t移动\tregular\t\t11\n2x9\t移动\tregular\t\t11\n", r"bad\.tsv:4: bad segment '2x9'"),
        ("139 移动 regular\n", r"bad\.tsv:3: bad segment .*separated by tabs"),
        (
            "139\t移动\tregular\t\t11\n\n139\t联通\tregular\t\t11\n",
            r":5: .*twice \(first on line 3\)",
        ),
        ("139\t移动\tnormal\t\t11\n", r"bad\.tsv:3: segment 139: unknown kind 'normal' \("),
        ("139\t移动\n", r"bad\.tsv:3: segment 139: no kind"),
        ("139\t移不动\tregular\t\t11\n", r"bad\.tsv:3: unknown operator '移不动'"),
        ("139\t\tvirtual\tfoo\t11\n", r"bad\.tsv:3: unknown host network 'foo'"),
        ("139\t移动\tregular\t\televen\n", r"bad\.tsv:3: bad length 'eleven'"),
        ("139\t移动\tregular\t\t11\thigh\t中国移动\tS1\textra\n", r"bad\.tsv:3: 9 tab-separated"),
    ],
)
def test_a_malformed_row_names_its_file_and_line(tmp_path, body, message):
    """Every refusal of a row says the file, the line number and what is wrong with it."""
    path = tmp_path / "bad.tsv"
    path.write_text("# a comment line\n" + HEADER + body, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        segments.load(path)


def test_a_table_that_is_not_utf8_names_the_line(tmp_path):
    """A table saved as GBK (Excel on Chinese Windows) is refused at its first non-UTF-8 line."""
    path = tmp_path / "gbk.tsv"
    path.write_bytes((HEADER + "139\t移动\tregular\t\t11\n").encode("gbk"))
    with pytest.raises(ConfigurationError, match=r"gbk\.tsv:2: not UTF-8 text"):
        segments.load(path)


def test_a_header_names_the_columns_in_any_order(tmp_path):
    """A header may order the columns and leave optional ones out; trailing tabs are empty."""
    path = tmp_path / "reordered.tsv"
    path.write_text(
        "segment\toperator\tholder\tkind\n194\t电信\t中国电信\tregular\t\t\n"
        "1700\t\t转售企业\tvirtual\n",
        encoding="utf-8",
    )
    table = segments.load(path)
    row = table.lookup("19400000000")
    assert row is not None
    assert (row.carrier, row.holder, row.kind, row.sources) == (T, "中国电信", "regular", "")
    assert table.lookup("17000000000").kind == "virtual"
    bad = tmp_path / "badheader.tsv"
    bad.write_text("segment\toperator\tkind\tcarrier\n139\t移动\tregular\t移动\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r"badheader\.tsv:1: unknown column 'carrier'"):
        segments.load(bad)
    bad.write_text("segment\toperator\n139\t移动\n", "utf-8")
    with pytest.raises(ConfigurationError, match=r":1: the header has no 'kind' column"):
        segments.load(bad)


def test_a_user_table_changes_offline_routing(tmp_path):
    """A segment unallocated in the built-in table (194) falls back to the user table's operator."""
    from smsroute.testing import FakeCarrierServer

    path = tmp_path / "newer.tsv"
    path.write_text(HEADER + "194\t电信\tregular\t\t11\n139\t移动\tregular\t\t11\n", "utf-8")
    table = segments.load(path)
    assert segments.default_table().lookup("19412345678").kind == "unallocated"
    with FakeCarrierServer() as server:
        server.fault = "http500"  # the vendor is down: the segment table decides
        client = CarrierClient(server.apikey, base_url=server.url)
        gateways = {"移动": "CMPP", "电信": "SMGP"}
        mine = Router(client, gateways, cache=MemoryCache(), segments=table)
        decision = mine.route("19412345678")
        assert (decision.source, decision.carrier, decision.gateway) == ("fallback", T, "SMGP")
        built_in = Router(client, gateways, cache=MemoryCache())
        with pytest.raises(NoRoute):
            built_in.route("19412345678")
        client.close()


def _header_sources(text: str) -> set[str]:
    return set(re.findall(r"^#\s+(S\d+[a-z]?)\s+\S", text, re.MULTILINE))


def test_every_source_a_row_cites_is_defined_in_the_header_and_every_one_is_cited():
    """The shipped table's sources column cites only the header's keys, and cites all of them."""
    text = resources.files("smsroute").joinpath("data/segments.tsv").read_text("utf-8")
    defined = _header_sources(text)
    assert {"S1", "S5b", "S17"} <= defined
    cited: dict[str, list[str]] = {}
    for row in segments.default_table().rows():
        assert row.sources, f"segment {row.prefix} cites no source"
        for key in row.sources.split(","):
            cited.setdefault(key.strip(), []).append(row.prefix)
    undefined = {k: v[:3] for k, v in cited.items() if k not in defined}
    assert not undefined, f"cited but not in the header: {undefined}"
    assert not defined - set(cited), f"in the header but never cited: {defined - set(cited)}"
