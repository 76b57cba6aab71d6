"""structlog loggers bound to the standard ``logging`` logger ``smsroute``.

A library logs but never configures logging. Unconfigured structlog prints
every event, debug included, to stdout; binding to the stdlib logger instead
lets the host program's logging configuration decide what is shown, and keeps
smsroute silent in a host that configured nothing (stdlib's last-resort
handler shows warnings and above only).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from smsroute.core.vendor import redact

__all__ = ["get_logger", "redact"]

_STDLIB = logging.getLogger("smsroute")


def get_logger(name: str = "smsroute") -> Any:
    """Return a structlog logger that writes through stdlib ``logging``."""
    std = _STDLIB if name == "smsroute" else logging.getLogger(name)
    return structlog.wrap_logger(
        std,
        processors=[
            # Asks the stdlib logger first: a debug event costs almost nothing
            # when the host has not enabled debug for "smsroute".
            structlog.stdlib.filter_by_level,
            structlog.processors.add_log_level,
            structlog.processors.LogfmtRenderer(key_order=["event"], drop_missing=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


class RedactApikey(logging.Filter):
    """A logging filter that masks ``apikey=`` values in records (urllib3 logs GET URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with the apikey masked; never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the host's problem, not ours
            return True
        if "apikey" in message.lower():
            record.msg = redact(message)
            record.args = None
        return True


_filter_installed = False


def install_urllib3_redaction() -> None:
    """Add RedactApikey to urllib3's connection-pool logger, once per process."""
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("urllib3.connectionpool").addFilter(RedactApikey())
        _filter_installed = True


# A library adds no handler but NullHandler (logging HOWTO): without it the
# stdlib's last-resort handler would print smsroute's warnings to stderr in a
# host that configured nothing.
_STDLIB.addHandler(logging.NullHandler())
