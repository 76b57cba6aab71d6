"""The progress display of a long ``route`` run: on stderr, and only where rows cannot mix with it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from smsroute.cli.common import err

__all__ = ["Progress", "progress_enabled"]


def progress_enabled(
    *, stderr_tty: bool, stdout_tty: bool, to_stdout: bool, disabled: bool
) -> bool:
    """Return True when a progress display may show on stderr.

    Only on a terminal, and not while rows print to stdout on a terminal too:
    that is most likely the same screen, where a bar would cut into the rows.
    """
    return not disabled and stderr_tty and not (to_stdout and stdout_tty)


class Progress:
    """A progress bar on stderr once a run takes over a second: tqdm if installed."""

    def __init__(
        self, total: int, enabled: bool, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._bar: Any = None
        self._enabled = enabled
        self._total = total
        self._done = 0
        self._clock = clock
        self._started = clock()
        self._last = self._started
        if not enabled:
            return
        try:
            from tqdm import tqdm  # optional: smsroute[progress]
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="number", file=sys.stderr, delay=1.0, leave=False)

    def update(self) -> None:
        """Count one routed number."""
        self._done += 1
        if self._bar is not None:
            self._bar.update()
            return
        if not self._enabled:
            return
        now = self._clock()
        if now - self._started >= 1.0 and now - self._last >= 2.0:
            self._last = now
            share = 100.0 * self._done / self._total if self._total else 100.0
            err(f"{self._done:,}/{self._total:,} numbers routed ({share:.0f}%)")

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
