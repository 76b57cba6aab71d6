"""Tests for the exception tree of STYLE.md and its vendor-code mapping."""

from __future__ import annotations

import pickle

import pytest

import smsroute
from smsroute import (
    ApiError,
    BalanceExhausted,
    CircuitOpen,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NoRoute,
    NumberNotFound,
    RequestRejected,
    ServiceError,
    SmsRouteError,
    TransportError,
    Unauthorized,
    WrongCarrier,
)
from smsroute.core.breaker import BreakerCore
from smsroute.core.outcome import Blame, blame, busy_error, overloaded
from smsroute.errors import error_for_code

TREE = [
    (InvalidNumber, SmsRouteError),
    (InvalidNumber, ValueError),
    (LookupFailed, SmsRouteError),
    (ApiError, LookupFailed),
    (RequestRejected, ApiError),
    (Unauthorized, ApiError),
    (NumberNotFound, ApiError),
    (BalanceExhausted, ApiError),
    (ServiceError, ApiError),
    (TransportError, LookupFailed),
    (CircuitOpen, LookupFailed),
    (NoRoute, SmsRouteError),
    (ConfigurationError, SmsRouteError),
    (WrongCarrier, SmsRouteError),
]


@pytest.mark.parametrize(("cls", "parent"), TREE)
def test_tree(cls, parent):
    """Each class sits where STYLE.md draws it."""
    assert issubclass(cls, parent)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [
        (TransportError, ApiError),
        (CircuitOpen, ApiError),
        (InvalidNumber, LookupFailed),
        (NoRoute, LookupFailed),
        (ConfigurationError, LookupFailed),
        (LookupFailed, ValueError),
        (ServiceError, TransportError),
    ],
)
def test_tree_branches_are_separate(cls, not_parent):
    """Sibling branches stay apart, so `except` clauses catch only what they mean."""
    assert not issubclass(cls, not_parent)


def test_invalid_number_is_value_error():
    """InvalidNumber is caught by `except ValueError` and keeps the offending text."""
    with pytest.raises(ValueError, match="bad") as info:
        raise InvalidNumber("bad", "abc")
    assert info.value.text == "abc"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1, RequestRejected),
        (-2, RequestRejected),
        (-3, RequestRejected),
        (-1, Unauthorized),
        (-9, Unauthorized),
        (-4, NumberNotFound),
        (-5, BalanceExhausted),
        (-8, ServiceError),
        (-99, ServiceError),
    ],
)
def test_error_for_code(code, cls):
    """Every vendor code maps to its class; unknown codes are a retryable ServiceError."""
    exc = error_for_code(code, "原因", endpoint="/carrier", mobile="139****5391")
    assert type(exc) is cls
    assert exc.code == code
    assert exc.reason == "原因"
    assert str(exc) == f"vendor code {code}: 原因 (/carrier 139****5391)"


@pytest.mark.parametrize("cls", [ApiError, RequestRejected, Unauthorized, ServiceError])
def test_api_error_pickles(cls):
    """An ApiError survives pickling (process pools, caches) with its code and reason."""
    exc = cls(-1, "apikey不正确", endpoint="/balance", mobile="")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is cls
    assert (copy.code, copy.reason, copy.endpoint, copy.mobile) == (
        -1,
        "apikey不正确",
        "/balance",
        "",
    )
    assert str(copy) == str(exc)


def test_plain_errors_pickle():
    """The other exceptions pickle with their message."""
    for exc in (TransportError("HTTP 502"), InvalidNumber("too short", "139")):
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)


def test_errors_are_exported_from_package():
    """The exception classes are the ones smsroute re-exports."""
    assert smsroute.errors.ApiError is ApiError


def test_an_overloaded_timeout_tells_the_breaker_nothing():
    """A timeout this process caused neither counts towards opening nor resets the count."""
    assert not overloaded(0.002, 0.5)  # a healthy loop: a timer a couple of ms late
    assert not overloaded(0.04, 0.5)  # under a tenth of the budget
    assert overloaded(0.06, 0.5)
    assert not overloaded(0.015, 0.05)  # the 20 ms floor on a small budget
    assert blame(busy_error("timed out")) is Blame.NOTHING
    core = BreakerCore(threshold=2)
    core.failure(TransportError("timed out"), now=0.0)
    for _ in range(10):
        core.failure(busy_error("timed out, 300 ms late"), now=0.0)
    assert (core.state, core.failures) == ("closed", 1)
    core.failure(TransportError("timed out"), now=0.0)
    assert core.state == "open"
