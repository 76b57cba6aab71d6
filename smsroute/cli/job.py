"""The routing pass of a ``route`` run: the window of rows in flight, retries, and the outputs.

Rows are submitted to an engine (asyncio or threads) and written in input
order as their decisions come, with at most ``4 * concurrency`` in flight.
A row whose lookup failed is kept aside and asked again at the end, within
``--max-wait`` (``--on-failure retry``); only then is its guess written,
marked in its ``source`` column and counted in the summary.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from smsroute.batch import Engine
from smsroute.cli.destination import Destination
from smsroute.cli.progress import Progress, progress_enabled
from smsroute.cli.reader import InputRow, Source
from smsroute.cli.summary import RouteSummary
from smsroute.cli.writer import ROUTE_COLUMNS, Layout, OutputError, RowWriter, decision_row
from smsroute.core.outcome import is_transient
from smsroute.errors import InvalidNumber, LookupFailed, NoRoute
from smsroute.numbers import normalize
from smsroute.routing import Decision
from smsroute.segments import SegmentTable

__all__ = ["Pending", "RouteJob"]

_RETRY_PAUSE: Final = (1.0, 30.0)  # first and longest pause between retry rounds


@dataclass
class Pending:
    """A row in the window: waiting for its decision, or a reject (reason set)."""

    row: InputRow
    future: Future[Decision] | None
    reason: str = ""
    answered: bool = False
    """The vendor answered about the number itself (-4 not found, -3 refused)."""


class RouteJob:
    """The routing pass of a run: the pool, the outputs and the window of rows in flight."""

    def __init__(
        self,
        args: argparse.Namespace,
        source: Source,
        summary: RouteSummary,
        first_line: dict[str, int],
        engine: Engine,
        hard: threading.Event,
        concurrency: int,
    ) -> None:
        self.args = args
        self.source = source
        self.summary = summary
        self.first_line = first_line
        self.engine: Engine | None = engine
        self.concurrency = concurrency
        self.hard = hard
        # Rows whose lookup failed (--on-failure retry): asked again at the end;
        # rows the vendor answered "no such number" or refused: guessed at the end.
        self.failed: list[InputRow] = []
        self.answered: list[InputRow] = []
        self.guess_now = args.on_failure == "fallback"
        self.breaker: Any = None  # the router's breaker, to wait it out between rounds
        self.table: SegmentTable | None = None  # --segments: the router's table, for normalize
        self.out = Destination(args.output, bom=args.excel)
        self.rejects = Destination(args.rejects, bom=args.excel) if args.rejects else None
        self.out_rows: RowWriter | None = None
        self.reject_rows: RowWriter | None = None
        self.progress: Progress | None = None
        self.window: deque[Pending] = deque()

    def open(self) -> None:
        """Open the outputs (refusing unwritable ones, exit 2) and the progress."""
        names, keys = self.source.column_names, self.source.json_keys
        try:
            self.out_rows = RowWriter(
                self.out.open(),
                self.args.format,
                Layout(names, keys, ROUTE_COLUMNS),
                name=self.out.name,
            )
            if self.rejects is not None:
                self.reject_rows = RowWriter(
                    self.rejects.open(),
                    self.args.format,
                    Layout(names, keys, ("reason",)),
                    name=self.rejects.name,
                )
        except BaseException:
            self.out.abandon()
            if self.rejects is not None:
                self.rejects.abandon()
            raise
        to_stdout = self.out.to_stdout or (self.rejects is not None and self.rejects.to_stdout)
        enabled = progress_enabled(
            stderr_tty=sys.stderr.isatty(),
            stdout_tty=sys.stdout.isatty(),
            to_stdout=to_stdout,
            disabled=self.args.no_progress,
        )
        self.progress = Progress(len(self.first_line), enabled)

    def route_all(self) -> None:
        """Route on the engine, writing rows and rejects in input order as they complete."""
        # At most ``limit`` lookups submitted ahead of the row being written:
        # memory stays flat on a long list while the engine stays busy.
        limit = self.concurrency * 4
        window = self.window
        for row in self.source.rows():
            if self.hard.is_set():
                break  # a wrong key or an empty account: the rest would only fall back
            pending = self._pending(row)
            if pending is None:
                continue
            window.append(pending)
            while window and (len(window) >= limit or window[0].future is None):
                self._drain_one()
        while window:
            self._drain_one()

    def _pending(self, row: InputRow) -> Pending | None:
        if not row.value:
            return Pending(row, None, f"empty: no number in {self.source.column_label()}")
        try:
            mobile = normalize(row.value, self.table, unknown_segments=True)
        except InvalidNumber as exc:
            return Pending(row, None, f"invalid: {exc}")
        if self.first_line.get(mobile) != row.line:
            return None  # a number seen on an earlier line: routed there
        assert self.engine is not None
        return Pending(row, self.engine.submit(mobile, fallback=self.guess_now))

    def retry_failed(self) -> None:
        """Ask again for the rows whose lookup failed, within --max-wait; then write guesses."""
        if self.answered and not self.hard.is_set():
            rows, self.answered, self.guess_now = self.answered, [], True
            self._route_rows(rows, answered=True)  # a cached negative: nothing paid
            self.guess_now = self.args.on_failure == "fallback"
        if not self.failed:
            return
        end = time.monotonic() + self.args.max_wait
        pause = _RETRY_PAUSE[0]
        while self.failed and not self.hard.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            # Wait out an open breaker (a failure per row would be all it gives).
            while self.breaker is not None and self.breaker.rejecting() and left > 0:
                time.sleep(min(0.2, left))
                left = end - time.monotonic()
            rows, self.failed = self.failed, []
            self.summary.retried += len(rows)
            self._route_rows(rows)
            if self.failed:
                time.sleep(max(0.0, min(pause, end - time.monotonic())))
                pause = min(pause * 2, _RETRY_PAUSE[1])
        if self.hard.is_set():
            return  # a rejected key or an empty account stopped the run: no guesses
        # Out of time: the guesses, marked as such (source column, summary, exit 3).
        rows, self.failed, self.guess_now = self.failed, [], True
        self._route_rows(rows)

    def _route_rows(self, rows: list[InputRow], *, answered: bool = False) -> None:
        for row in rows:
            assert self.engine is not None
            mobile = normalize(row.value, self.table, unknown_segments=True)
            future = self.engine.submit(mobile, fallback=self.guess_now)
            self.window.append(Pending(row, future, answered=answered))
            while len(self.window) >= self.concurrency * 4:
                self._drain_one()
        while self.window:
            self._drain_one()

    def _drain_one(self) -> None:
        # Taken off the window only once its row is written: a row whose wait
        # is interrupted stays, to be written if its lookup still finishes.
        pending = self.window[0]
        row, s = pending.row, self.summary
        if pending.future is None:
            self._reject(row, pending.reason)
            self.window.popleft()
            return
        try:
            decision = pending.future.result()
        except InvalidNumber as exc:  # a new segment the vendor says is no number (-3)
            s.invalid.add(row.line, row.value, str(exc))
            self._reject(row, f"invalid: {exc}")
        except NoRoute as exc:
            s.no_route.add(row.line, row.value, str(exc))
            self._reject(row, f"no gateway: {exc}")
        except LookupFailed as exc:
            if not is_transient(exc):
                self.answered.append(row)  # the vendor's answer (-4, -3): its guess, now
            elif self.args.on_failure == "fail":
                s.lookup_failed = f"line {row.line}: {exc}"
                self.hard.set()  # no more rows are submitted
            else:
                self.failed.append(row)
        else:
            if pending.answered:
                s.unknown_to_vendor += 1
            elif decision.source == "stale":
                s.guessed_stale += 1
            elif decision.source == "fallback":
                s.guessed_table += 1
            fields = decision_row(decision)
            assert self.out_rows is not None
            self.out_rows.write(row.line, row.cells, fields)
            s.written += 1
            s.operators[fields["current"] or "unknown"] += 1
            if decision.info is not None:
                s.answered += 1
                s.ported += bool(fields["ported"])
        self.window.popleft()
        assert self.progress is not None
        self.progress.update()

    def _reject(self, row: InputRow, reason: str) -> None:
        if self.reject_rows is not None:
            self.reject_rows.write(row.line, row.cells, {"reason": reason})
            self.summary.rejected += 1

    def close(self, *, complete: bool) -> None:
        """Stop the engine, then rename complete outputs into place or keep them as .partial."""
        try:
            if self.engine is not None:
                # Lookups in flight are already paid: let them land in the cache
                # (each is bounded by the deadline) before it is closed.
                self.engine.shutdown(wait=True)
                self.engine = None
            if self.progress is not None:
                self.progress.close()
            if not complete:
                self._write_finished()
        finally:
            self._finish(complete)

    def _write_finished(self) -> None:
        """Write the rows at the head of the window whose lookups finished before the stop."""
        # Only a prefix, so that the kept rows stay every row up to a line.
        while self.window:
            future = self.window[0].future
            if future is not None and (not future.done() or future.cancelled()):
                return
            if future is not None and not isinstance(future.exception(), (type(None), NoRoute)):
                return
            try:
                self._drain_one()
            except OutputError:
                return  # the disk that stopped the run refuses these too

    def _finish(self, complete: bool) -> None:
        s = self.summary
        for dest, rows in ((self.out, self.out_rows), (self.rejects, self.reject_rows)):
            if dest is None or rows is None:
                continue
            try:
                dest.finish(complete=complete, keep=rows.rows > 0)
            except OutputError as exc:
                complete = False
                if s.error is None:
                    s.error = str(exc)
        s.target = self.out.name
        s.partial = self.out.partial
        if self.rejects is not None:
            s.rejects = self.rejects.partial or self.rejects.name
