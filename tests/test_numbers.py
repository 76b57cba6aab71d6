"""Tests for smsroute.normalize: what people paste, what is refused, and why."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import smsroute
from smsroute import InvalidNumber, normalize
from smsroute.numbers import mask

NUMBER = "13972565391"
FULLWIDTH = str.maketrans("0123456789+()-", "０１２３４５６７８９＋（）－")


@pytest.mark.parametrize(
    "text",
    [
        "13972565391",
        "+86 139 7256 5391",
        "0086-139-7256-5391",
        "86 13972565391",
        "(+86)139-7256-5391",
        "+8613972565391",
        "8613972565391",
        "008613972565391",
        "139.7256.5391",
        "１３９７２５６５３９１",
        "＋８６ １３９ ７２５６ ５３９１",
        "（＋８６）１３９－７２５６－５３９１",
        "  13972565391  ",
        "\t13972565391\n",
        "\u3000139\u00a07256\u30005391\u3000",
    ],
)
def test_normalize_accepts_pasted_forms(text):
    """Every form the issue lists normalises to the same 11 ASCII digits."""
    assert normalize(text) == NUMBER


def test_normalize_accepts_ints():
    """An int is read as its decimal digits, with or without the country code."""
    assert normalize(13972565391) == NUMBER
    assert normalize(8613972565391) == NUMBER


def test_invalid_number_is_a_value_error():
    """Callers that catch ValueError also catch InvalidNumber."""
    with pytest.raises(ValueError, match="too short"):
        normalize("1397256539")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1397256539", "too short"),
        ("139", "too short"),
        ("86", "too short"),
        ("139725653911", "too long"),
        ("13972565391 13972565391", "too long"),
        ("1" * 65, "too long"),
        ("1397256539a", "not a digit"),
        ("139-7256-539x", "not a digit"),
        ("139,7256,5391", "not a digit"),
        ("86+13972565391", "not a digit"),
        ("٣٩٧٢٥٦٥٣٩١٣", "not a digit"),
        ("23972565391", "not a mobile segment"),
        ("01097256539", "not a mobile segment"),
        ("10086123456", "not a mobile segment"),
        ("12345678901", "not a mobile segment"),
        ("14001234567", "not a mobile segment"),  # 1400 holds 13-digit IoT numbers
        ("14412345678", "not a mobile segment"),  # 1441 likewise
        ("14212345678", "unallocated segment"),
        ("15412345678", "unallocated segment"),
        ("16012345678", "unallocated segment"),
        ("19412345678", "unallocated segment"),
        ("17413000000", "unallocated segment"),
        ("", "empty"),
        ("  -- ", "empty"),
        ("+1 202 555 0143", "country code"),
    ],
)
def test_normalize_says_what_is_wrong(text, message):
    """Each refusal is an InvalidNumber whose message names the problem."""
    with pytest.raises(InvalidNumber, match=message) as info:
        normalize(text)
    assert info.value.text == text


@pytest.mark.parametrize("value", [None, 13972565391.0, b"13972565391", True, ["13972565391"]])
def test_normalize_rejects_non_text(value):
    """Values that are neither str nor int are refused, not coerced."""
    with pytest.raises(InvalidNumber, match="not a phone number"):
        normalize(value)


def test_normalize_rejects_negative_int():
    """A negative int is not a phone number, even though its digits would be one."""
    with pytest.raises(InvalidNumber):
        normalize(-13972565391)


def test_mask_keeps_prefix_and_last_four():
    """mask() shows what logs may show: the segment and the last four digits."""
    assert mask(NUMBER) == "139****5391"
    assert mask("123") == "***"


def _is_allocated_mobile(number: str) -> bool:
    row = smsroute.segments.lookup(number)
    return (
        len(number) == 11
        and number.isascii()
        and number.isdigit()
        and row is not None
        and row.allocated
        and row.length == 11
    )


def _check_contract(text: object) -> None:
    try:
        out = normalize(text)
    except InvalidNumber:
        return
    assert _is_allocated_mobile(out)
    assert normalize(out) == out  # idempotent on its output


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
@example("１３９７２５６５３９１²")
@example("⑴3972565391")
def test_normalize_on_arbitrary_text(text):
    """Arbitrary text yields an allocated 11-digit number or InvalidNumber, nothing else."""
    _check_contract(text)


@settings(max_examples=150, deadline=None)
@given(st.integers())
def test_normalize_on_arbitrary_ints(value):
    """Arbitrary ints yield an allocated 11-digit number or InvalidNumber, nothing else."""
    _check_contract(value)


_PREFIXES = st.sampled_from(["", "+86", "+86 ", "0086", "0086-", "86", "86 ", "(+86)", "+", "0"])
_SEPARATORS = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "\u3000", "/", "_", "\t"])


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Build near-valid numbers: a prefix, 9-13 digits mostly starting with 1, separators."""
    digits = draw(
        st.one_of(
            st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
            st.from_regex(r"[0-9]{9,13}", fullmatch=True),
        )
    )
    parts = [draw(_PREFIXES)]
    for ch in digits:
        parts.append(draw(_SEPARATORS))
        parts.append(ch)
    text = "".join(parts) + draw(st.sampled_from(["", " ", "\n", "x", "+"]))
    if draw(st.booleans()):
        text = text.translate(FULLWIDTH)
    return text


@settings(max_examples=200, deadline=None)
@given(near_valid())
def test_normalize_on_near_valid_text(text):
    """Near-valid pasted numbers yield an allocated 11-digit number or InvalidNumber."""
    _check_contract(text)


@settings(max_examples=150, deadline=None)
@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_normalize_keeps_valid_digits(number):
    """A bare 11-digit number comes back unchanged exactly when its segment is allocated."""
    if _is_allocated_mobile(number):
        assert normalize(number) == number
        assert normalize("+86 " + number) == number
    else:
        with pytest.raises(InvalidNumber):
            normalize(number)
