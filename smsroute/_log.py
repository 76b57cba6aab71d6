"""structlog loggers bound to the standard ``logging`` logger ``smsroute``.

A library logs but never configures logging. Unconfigured structlog prints
every event, debug included, to stdout; binding to the stdlib logger instead
lets the host program's logging configuration decide what is shown, and keeps
smsroute silent in a host that configured nothing (stdlib's last-resort
handler shows warnings and above only).

What requests and urllib3 log is not ours to silence, but it carries request
URLs (for GET: the apikey and the full number) and the vendor's header
bytes: :func:`install_redaction` masks both in every logger they write to.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, quote_plus

import structlog

from smsroute.core.vendor import redact

__all__ = ["RedactApikey", "debug_enabled", "get_logger", "install_redaction", "redact"]

_STDLIB = logging.getLogger("smsroute")


def debug_enabled() -> bool:
    """Return True when the host enabled debug for ``smsroute`` (ask before building an event)."""
    # Even an event structlog drops costs a few microseconds to build; on a
    # path run per lookup that is a tenth of the client's CPU.
    return _STDLIB.isEnabledFor(logging.DEBUG)


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
    """A logging filter that masks apikeys and mobile numbers in records, tracebacks included.

    Installed on the loggers of requests and urllib3, which log request URLs
    (for GET: apikey and full number) and, in "Failed to parse headers"
    warnings, the URL and the vendor's header bytes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record with secrets and numbers masked; never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the host's problem, not ours
            return True
        clean = self.clean(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info:
            text = _FORMATTER.formatException(record.exc_info)
            clean = self.clean(text)
            if clean != text:
                # Formatters print exc_text when exc_info is gone; a handler that
                # formats exc_info itself (Sentry and the like) cannot see the URL.
                record.exc_info = None
                record.exc_text = clean
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True

    def clean(self, text: str) -> str:
        """Return text with ``apikey=`` values, the known secrets and mobile numbers masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return redact(text)


_FORMATTER = logging.Formatter()
_REDACT = RedactApikey()
_MIN_SECRET = 6  # a shorter key would mask ordinary words; `apikey=` still masks it in URLs
# Every logger urllib3 and requests write to, named before their modules are
# imported (SOCKS, HTTP/2, pyopenssl load lazily): a module that imports later
# gets the logger that already has the filter. Filters of a parent logger do
# not apply to a child's records, so each one needs its own.
_LIBRARY_LOGGERS = (
    "requests",
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "urllib3.contrib.pyopenssl",
    "urllib3.contrib.socks",
    "urllib3.contrib.emscripten.response",
    "urllib3.http2.connection",
)


def install_redaction(secret: str | None = None) -> None:
    """Add RedactApikey to every logger of requests and urllib3; also mask ``secret``.

    Idempotent; cheap enough to call per client: it also catches loggers
    those libraries created since the last call.
    """
    if secret and len(secret) >= _MIN_SECRET:
        forms = {secret, quote_plus(secret), quote(secret, safe="")}
        if not forms <= set(_REDACT.secrets):
            # Longest first, so that a key containing another is masked whole.
            _REDACT.secrets = tuple(sorted(forms.union(_REDACT.secrets), key=len, reverse=True))
    names = set(_LIBRARY_LOGGERS)
    names.update(
        name
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(("urllib3.", "requests."))
    )
    for name in names:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


# A library adds no handler but NullHandler (logging HOWTO): without it the
# stdlib's last-resort handler would print smsroute's warnings to stderr in a
# host that configured nothing.
_STDLIB.addHandler(logging.NullHandler())
