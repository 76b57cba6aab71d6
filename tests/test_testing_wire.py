"""Tests for smsroute.testing.wire: form parsing matches urllib's, request params, URLs."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsroute.testing.wire import base_url, parse_form, refuse_remote, request_params

FORM_TEXT = st.text(alphabet=st.sampled_from("ab=&%+2 0F;éx"), max_size=24)


@given(FORM_TEXT)
def test_parse_form_is_parse_qs_first_value(text):
    """parse_form's fast path answers what parse_qs answers, first value per name."""
    expected = parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="replace")
    assert parse_form(text) == {k: v[0] for k, v in expected.items()}


def test_request_params_query_then_form():
    """The form body is read over the query string, and only for form content types."""
    form = "application/x-www-form-urlencoded; charset=utf-8"
    assert request_params("/carrier?a=1&b=2", b"b=3", form) == ("/carrier", {"a": "1", "b": "3"})
    assert request_params("/carrier?a=1", b'{"b": 3}', "application/json") == (
        "/carrier",
        {"a": "1"},
    )
    assert request_params("/x", "mobile=%E7%94%B5", "") == ("/x", {"mobile": "电"})


def test_base_url_and_loopback_guard():
    """IPv6 hosts are bracketed; a non-loopback bind needs allow_remote."""
    assert base_url("::1", 80) == "http://[::1]:80"
    assert base_url("127.0.0.1", 8) == "http://127.0.0.1:8"
    refuse_remote("localhost", allow_remote=False)
    refuse_remote("10.0.0.1", allow_remote=True)
    with pytest.raises(ValueError):
        refuse_remote("10.0.0.1", allow_remote=False)
