"""The summary of a ``route`` run: what it counted, and the lines it prints on stderr.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from smsroute.cli.common import err
from smsroute.resilience import Alert

__all__ = ["RouteSummary", "print_summary"]

_MAX_LISTED: Final = 20  # invalid rows listed one by one in the summary


@dataclass
class RouteSummary:
    """What a route run did, for the summary on stderr."""

    rows: int = 0
    duplicates: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)
    no_route: list[tuple[int, str, str]] = field(default_factory=list)
    unique: int = 0
    written: int = 0
    operators: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    ported: int = 0
    interrupted: bool = False
    alert: Alert | None = None


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def print_summary(
    s: RouteSummary, stats: dict[str, Any], source: str, target: str, seconds: float
) -> None:
    """Print the summary of a run on stderr; ``stats`` is the router's ``stats()``."""
    lines: list[str] = []
    name = "stdin" if source == "-" else source
    if s.interrupted:
        lines.append(f"interrupted: {s.written:,} of {s.unique:,} numbers written to {target}")
    lines.append(
        f"routed {_count(s.written, 'number')} from {name} to {target} in {seconds:.1f} s "
        f"({_count(s.rows, 'row')}: {_count(s.duplicates, 'duplicate')}, "
        f"{len(s.invalid):,} invalid)"
    )
    if s.operators:
        ops = ", ".join(f"{op} {n:,}" for op, n in s.operators.most_common())
        lines.append(f"  operators: {ops}")
    if s.answered:
        lines.append(
            f"  ported: {s.ported:,} of {s.answered:,} answered "
            f"({100.0 * s.ported / s.answered:.1f}%)"
        )
    decisions = stats["decisions"]
    lines.append(
        f"  queries paid: {decisions['upstream']:,} (upstream calls: {stats['upstream_calls']:,}); "
        f"cache hits: {decisions['cache']:,}; stale: {decisions['stale']:,}; "
        f"fallbacks: {decisions['fallback']:,}"
    )
    if stats["fallback_reasons"]:
        reasons = ", ".join(f"{k} ({v:,})" for k, v in stats["fallback_reasons"].items())
        lines.append(f"  fallback reasons: {reasons}")
    if stats["breaker_opened"]:
        lines.append(f"  breaker opened {stats['breaker_opened']} time(s); now {stats['breaker']}")
    if s.alert is not None:
        code = f" (code {s.alert.code})" if s.alert.code is not None else ""
        lines.append(f"  stopped: {s.alert.kind}{code}: {s.alert.reason}")
    for title, items in (("invalid rows", s.invalid), ("no gateway", s.no_route)):
        if not items:
            continue
        lines.append(f"  {title}: {len(items):,}")
        for lineno, text, reason in items[:_MAX_LISTED]:
            lines.append(f"    line {lineno}: {text[:40]!r}: {reason}")
        if len(items) > _MAX_LISTED:
            lines.append(f"    ... and {len(items) - _MAX_LISTED:,} more")
    for line in lines:
        err(line)
