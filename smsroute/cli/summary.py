"""The summary of a ``route`` run: what it counted, and the lines it prints on stderr.

It keeps counts and the few examples it shows, truncated, never whole rows:
a file of a million huge junk lines costs the summary 20 short strings.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from smsroute.cli.common import err
from smsroute.core.stats import RouterStats
from smsroute.resilience import Alert

__all__ = ["Examples", "RouteSummary", "print_summary"]

_MAX_LISTED: Final = 20  # rows listed one by one per kind
_TEXT_SHOWN: Final = 40  # characters of a row's text shown
_REASON_SHOWN: Final = 120


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size] + "…"


@dataclass
class Examples:
    """A count of rows of one kind, and the first few of them, truncated, to show."""

    count: int = 0
    shown: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, line: int, text: str, reason: str) -> None:
        """Count one row; keep it (truncated) if it is among the first shown."""
        self.count += 1
        if len(self.shown) < _MAX_LISTED:
            self.shown.append((line, _clip(text, _TEXT_SHOWN), _clip(reason, _REASON_SHOWN)))


@dataclass
class RouteSummary:
    """What a route run did, for the summary on stderr."""

    source: str = ""
    target: str = "stdout"
    input: str = ""
    """How the input was read (encoding, delimiter, column)."""
    csv_input: bool = False
    rows: int = 0
    duplicates: int = 0
    invalid: Examples = field(default_factory=Examples)
    empty: Examples = field(default_factory=Examples)
    no_route: Examples = field(default_factory=Examples)
    unique: int = 0
    written: int = 0
    operators: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    ported: int = 0
    stopped: str | None = None
    """``interrupted`` (Ctrl-C) or ``terminated`` (SIGTERM), or None."""
    alert: Alert | None = None
    error: str | None = None
    """The error that stopped the run (a full disk...), or None."""
    partial: str | None = None
    """Where the rows of an incomplete run were kept, or None."""
    rejects: str | None = None
    """Where rejected rows went (the ``.partial`` name if incomplete), or None."""
    rejected: int = 0
    guessed_stale: int = 0
    """Rows written from a stale answer (the vendor failed)."""
    guessed_table: int = 0
    """Rows written from the segment table: the original operator (the vendor failed)."""
    unknown_to_vendor: int = 0
    """Rows the vendor refused or does not know (-3, -4): routed by their segment."""
    retried: int = 0
    """Rows whose lookup failed at first and were asked again."""
    lookup_failed: str | None = None
    """With --on-failure fail: the lookup error that stopped the run."""


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def print_summary(s: RouteSummary, stats: RouterStats, seconds: float) -> None:
    """Print the summary of a run on stderr; ``stats`` is the router's ``stats()``."""
    lines: list[str] = []
    where = s.partial or s.target
    not_written = f" ({s.target} not written)" if s.partial else ""
    if s.error is not None:
        lines.append(s.error)
    if s.stopped is not None:
        lines.append(
            f"{s.stopped}: {s.written:,} of {s.unique:,} numbers written to {where}{not_written}"
        )
    elif s.partial is not None:
        lines.append(f"incomplete: {_count(s.written, 'row')} kept in {where}{not_written}")
    empty = f", {s.empty.count:,} empty" if s.csv_input or s.empty.count else ""
    lines.append(
        f"routed {_count(s.written, 'number')} from {s.source} to {where} in {seconds:.1f} s "
        f"({_count(s.rows, 'row')}: {_count(s.duplicates, 'duplicate')}, "
        f"{s.invalid.count:,} invalid{empty})"
    )
    if s.input:
        lines.append(f"  input: {s.input}")
    if s.operators:
        ops = ", ".join(f"{op} {n:,}" for op, n in s.operators.most_common())
        lines.append(f"  operators: {ops}")
    if s.answered:
        lines.append(
            f"  ported: {s.ported:,} of {s.answered:,} answered "
            f"({100.0 * s.ported / s.answered:.1f}%)"
        )
    decisions = stats["decisions"]
    # Timeouts after the request went out may have been charged all the same.
    maybe = f", maybe billed: {stats['maybe_billed']:,}" if stats["maybe_billed"] else ""
    lines.append(
        f"  queries paid: {decisions['upstream']:,} (upstream calls: {stats['upstream_calls']:,}"
        f"{maybe}); "
        f"cache hits: {decisions['cache']:,}; stale: {decisions['stale']:,}; "
        f"fallbacks: {decisions['fallback']:,}"
    )
    if stats["fallback_reasons"]:
        reasons = ", ".join(f"{k} ({v:,})" for k, v in stats["fallback_reasons"].items())
        lines.append(f"  fallback reasons: {reasons}")
    if stats["breaker_opened"]:
        lines.append(f"  breaker opened {stats['breaker_opened']} time(s); now {stats['breaker']}")
    if s.retried:
        lines.append(f"  retried: {_count(s.retried, 'row')} whose first lookup failed")
    guesses = s.guessed_stale + s.guessed_table
    if guesses:
        lines.append(
            f"  {_count(guesses, 'row')} are guesses ({s.guessed_table:,} from the segment "
            f"table, {s.guessed_stale:,} from stale answers; source column): rerun to retry them"
        )
    if s.unknown_to_vendor:
        lines.append(
            f"  {_count(s.unknown_to_vendor, 'number')} the vendor refused or does not know: "
            "routed by their segment"
        )
    if s.lookup_failed is not None:
        lines.append(f"  stopped (--on-failure fail): {s.lookup_failed}")
    if s.alert is not None:
        code = f" (code {s.alert.code})" if s.alert.code is not None else ""
        lines.append(f"  stopped: {s.alert.kind}{code}: {s.alert.reason}")
    lines += _listing(s)
    for line in lines:
        err(line)


def _listing(s: RouteSummary) -> list[str]:
    lines: list[str] = []
    for title, examples in (
        ("invalid rows", s.invalid),
        ("empty cells", s.empty),
        ("no gateway", s.no_route),
    ):
        if not examples.count:
            continue
        lines.append(f"  {title}: {examples.count:,}")
        if examples is s.empty:
            numbers = ", ".join(str(line) for line, _, _ in examples.shown)
            lines.append(f"    line{'s' if len(examples.shown) > 1 else ''} {numbers}")
        else:
            for lineno, text, reason in examples.shown:
                lines.append(f"    line {lineno}: {text!r}: {reason}")
        if examples.count > len(examples.shown):
            lines.append(f"    ... and {examples.count - len(examples.shown):,} more")
    kinds = (s.invalid, s.empty, s.no_route)
    total = sum(e.count for e in kinds)
    if s.rejects is not None:
        lines.append(f"  rejects: {_count(s.rejected, 'row')} written to {s.rejects}")
    elif any(e.count > len(e.shown) for e in kinds):
        lines.append(f"  (pass --rejects FILE to keep all {total:,} rejected rows)")
    return lines
