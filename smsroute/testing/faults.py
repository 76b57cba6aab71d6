"""The fault vocabulary: the names, the ``Fault`` type, validation and what each fault looks like.

:data:`FaultKind` is the one place the names are written; :data:`FAULTS` is
derived from it, and the tables here are keyed by it so that a misspelt
name fails the type check.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from smsroute.testing.wire import nginx_page

__all__ = ["FAULTS", "HTTP_FAULTS", "Fault", "FaultKind", "check_fault", "spoil"]

FaultKind = Literal[
    "http500",
    "http502",
    "html",
    "truncated",
    "trailing_comma",
    "unknown_isp",
    "missing_field",
    "hang",
    "reset",
    "slow",
]
"""The name of a transport-level or malformed-answer fault."""

Fault = int | FaultKind
"""A vendor error code to answer with, or the name of a transport-level fault."""

FAULTS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
"""Every fault name, in :data:`FaultKind`'s order."""

HTTP_FAULTS: Final[Mapping[FaultKind, tuple[int, bytes]]] = {
    "http500": (500, nginx_page("500 Internal Server Error")),
    "http502": (502, nginx_page("502 Bad Gateway")),
    # A captive portal or a maintenance page: status 200, but not JSON.
    "html": (
        200,
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>系统维护</title></head>"
        "<body><h1>系统维护中,请稍后访问</h1></body></html>".encode(),
    ),
}
"""The faults answered by an HTML page instead of JSON: name -> (status, page)."""


def check_fault(fault: object) -> Fault | None:
    """Return ``fault`` if it is None, an int code or a fault name; raise ValueError if not."""
    if fault is None or fault in FAULTS:
        return fault
    if isinstance(fault, int) and not isinstance(fault, bool):
        return fault
    raise ValueError(f"unknown fault {fault!r}: want None, an int code or one of {FAULTS}")


def spoil(
    result: Mapping[str, Any], fault: Literal["unknown_isp", "missing_field"]
) -> dict[str, Any]:
    """Return a copy of a ``result`` member damaged the way ``fault`` says."""
    spoiled = dict(result)
    if fault == "unknown_isp":
        if "Now_isp" in spoiled:
            spoiled["Now_isp"] = "火星移动"
    else:
        spoiled.pop("Now_isp" if "Now_isp" in spoiled else "balance", None)
    return spoiled
