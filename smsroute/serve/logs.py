"""How ``smsroute serve`` logs: one line per event on stderr, written in batches.

The service is an application, so unlike the library it configures logging:
the root logger writes each record's message (smsroute's events are logfmt
already) to stderr, where systemd's journal or a container runtime picks
them up. With ``--workers`` each line starts with ``worker=N``.

stderr is written at most every :data:`FLUSH_EVERY` seconds, and at once
for a warning or worse. Python's own ``sys.stderr`` is line-buffered (and
unbuffered under ``PYTHONUNBUFFERED``): one ``write`` system call per
line, which the benchmarks measured at a quarter of a cache hit's cost. So
the handler writes to a block-buffered stream of its own on file
descriptor 2, and :func:`flush_periodically` runs in the server's loop so
that a quiet service still shows its last lines within that time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Final, TextIO

__all__ = [
    "FLUSH_EVERY",
    "BatchedStderr",
    "configure_logging",
    "flush_logs",
    "flush_periodically",
]

FLUSH_EVERY: Final = 0.25  # seconds a line may wait in the buffer


class BatchedStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that flushes at most every FLUSH_EVERY seconds, or for a warning."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else _buffered_stderr())
        self._flushed = 0.0
        self._urgent = False

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record; flush now when it is a warning or worse."""
        self._urgent = record.levelno >= logging.WARNING
        super().emit(record)

    def flush(self) -> None:
        """Flush when urgent or due (StreamHandler.emit calls this after every record)."""
        now = time.monotonic()
        if self._urgent or now - self._flushed >= FLUSH_EVERY:
            self.flush_now()

    def flush_now(self) -> None:
        """Flush the stream whatever the time."""
        self._urgent = False
        self._flushed = time.monotonic()
        super().flush()

    def close(self) -> None:
        """Flush what is buffered, then close."""
        self.flush_now()
        super().close()


def _buffered_stderr() -> TextIO:
    """Return a block-buffered text stream on file descriptor 2 (sys.stderr if it has none)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test harness, or closed
        return sys.stderr
    # Never closed by us: it lives as long as the process logs, and fd 2 is not ours.
    return open(
        fd, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace", closefd=False
    )


def flush_logs() -> None:
    """Write out what the batched handlers hold (before printing to stderr directly)."""
    _flush_all()


def configure_logging(level: str, worker: int | None = None) -> None:
    """Send every record at ``level`` and above to stderr, batched; warnings become records."""
    handler = BatchedStderr()
    prefix = "" if worker is None else f"worker={worker} "
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
    logging.captureWarnings(True)


async def flush_periodically() -> None:
    """Flush the batched handlers every FLUSH_EVERY seconds, until cancelled."""
    try:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            _flush_all()
    finally:
        _flush_all()


def _flush_all() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchedStderr):
            handler.flush_now()
