"""``smsroute lookup``: ask the vendor for the current operator of the numbers given.

Pasted forms of one number (``+86 139-...``, full-width digits) are one query
and one row. With ``--cache`` or ``--cache-file`` a fresh answer in the file
``route`` uses is shown without paying, and what is paid for is stored there.
``--config FILE`` gives the vendor, the segment table and (when it names a
backend) the cache of the settings file ``serve`` reads; flags override it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from smsroute import codec
from smsroute.cli.answers import open_or_memory
from smsroute.cli.args import add_subcommand
from smsroute.cli.common import EXIT_FAILED, EXIT_OK, carrier_name, err, yes_no
from smsroute.cli.configfile import (
    add_config_argument,
    add_segments_argument,
    command_settings,
    file_cache,
    require_apikey,
    segment_table,
)
from smsroute.client import CarrierClient
from smsroute.config import Settings, build_client
from smsroute.errors import (
    BalanceExhausted,
    InvalidNumber,
    LookupFailed,
    NumberNotFound,
    SmsRouteError,
    Unauthorized,
)
from smsroute.models import CarrierInfo
from smsroute.numbers import normalize
from smsroute.tables import format_table
from smsroute.types import CacheBackend

__all__ = ["answer_json", "error_json", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``lookup`` subcommand."""
    p = add_subcommand(sub, "lookup", "ask the vendor for the current operator of numbers")
    p.add_argument("numbers", nargs="+", metavar="NUMBER", help="pasted forms of one are one query")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line per number, errors included (then nothing on stderr)",
    )
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        action="store_true",
        help="answer from the cache file route uses, and store what is paid for there",
    )
    cache.add_argument("--cache-file", metavar="PATH", help="as --cache, with this SQLite file")
    s = p.add_argument_group("settings")
    add_config_argument(s)
    add_segments_argument(s)
    p.set_defaults(func=run)


def answer_json(info: CarrierInfo) -> dict[str, Any]:
    """Return a vendor answer as the JSON object ``lookup --json`` prints."""
    return {
        "number": info.mobile,
        "initial": carrier_name(info.initial),
        "current": carrier_name(info.current),
        "ported": info.ported,
        "virtual": info.virtual,
        "area": info.area,
        "res": info.res,
    }


def error_json(text: str, number: str | None, error: str, message: str) -> dict[str, Any]:
    """Return the JSON object ``lookup --json`` prints for a number it has no answer for."""
    return {"input": text, "number": number, "error": error, "code": None, "message": message}


def _emit(body: dict[str, Any]) -> None:
    print(json.dumps(body, ensure_ascii=False), flush=True)


def _failure_json(text: str, number: str | None, exc: SmsRouteError) -> dict[str, Any]:
    body = error_json(text, number, type(exc).__name__, str(exc))
    body["code"] = getattr(exc, "code", None)
    return body


class _Answers:
    """Answers from the cache when it has a fresh one, else from the vendor (then cached)."""

    def __init__(self, settings: Settings, cache: CacheBackend | None) -> None:
        self._settings = settings
        self._cache = cache
        self._client: CarrierClient | None = None

    def lookup(self, mobile: str) -> tuple[CarrierInfo, str]:
        """Return the answer for ``mobile`` and where it came from (``cache`` or ``upstream``)."""
        if self._cache is not None:
            hit = self._cache.get(mobile)
            if hit is not None and hit[1]:
                info = codec.decode(mobile, hit[0])
                if info is None:  # the vendor said "not found" less than an hour ago
                    raise NumberNotFound(-4, "not found (cached)")
                return info, "cache"
        if self._client is None:
            # Made on the first miss: answers all from the cache need no apikey.
            require_apikey(self._settings)
            self._client = build_client(self._settings)
        try:
            info = self._client.lookup(mobile)
        except NumberNotFound:
            if self._cache is not None:
                self._cache.set(mobile, codec.NOT_FOUND)
            raise
        if self._cache is not None:
            self._cache.set(mobile, codec.encode(info))
        return info, "upstream"

    def close(self) -> None:
        """Close the vendor client, if one was made."""
        if self._client is not None:
            self._client.close()


def run(args: argparse.Namespace) -> int:
    """Look each distinct number up, in the order given; print a table or JSON lines."""
    settings = command_settings(args)
    table = segment_table(args, settings)
    cache, close_cache = _cache(args, settings)
    cached = cache is not None
    answers = _Answers(settings, cache)
    rows: list[tuple[CarrierInfo, str]] = []
    seen: set[str] = set()
    stopped: LookupFailed | None = None
    failed = False
    try:
        for text in args.numbers:
            try:
                # A mobile-range segment the table does not know yet is asked, as
                # `route` and the routers ask it: the vendor's -3 (free) says if
                # it is no number.
                mobile = normalize(text, table, unknown_segments=True)
            except InvalidNumber as exc:
                failed = True
                if args.json:
                    _emit(error_json(text, None, "InvalidNumber", str(exc)))
                else:
                    err(f"{text}: invalid number: {exc}")
                continue
            if mobile in seen:
                continue  # another pasted form of a number already answered
            seen.add(mobile)
            if stopped is not None:
                failed = True
                if args.json:
                    why = f"not looked up after {type(stopped).__name__}"
                    _emit(error_json(text, mobile, "Skipped", why))
                continue
            try:
                info, source = answers.lookup(mobile)
            except LookupFailed as exc:
                failed = True
                if args.json:
                    _emit(_failure_json(text, mobile, exc))
                else:
                    err(f"{mobile}: lookup failed: {exc}")
                if isinstance(exc, (Unauthorized, BalanceExhausted)):
                    stopped = exc  # every further query would fail the same way
                continue
            rows.append((info, source))
            if args.json:
                body = answer_json(info)
                if cached:
                    body["source"] = source
                _emit(body)
    finally:
        answers.close()
        close_cache()
    if rows and not args.json:
        _print_table(rows, with_source=cached)
    return EXIT_FAILED if failed else EXIT_OK


def _cache(
    args: argparse.Namespace, settings: Settings
) -> tuple[CacheBackend | None, Callable[[], None]]:
    """Return the answer cache of --cache, --cache-file or the file's [cache], and its close."""
    if args.cache or args.cache_file is not None:
        return open_or_memory(args.cache_file, policy=settings.cache.policy)
    return file_cache(settings) or (None, lambda: None)


def _print_table(rows: list[tuple[CarrierInfo, str]], *, with_source: bool) -> None:
    headers = ["number", "initial", "current", "ported", "virtual", "area"]
    table = []
    for i, source in rows:
        row = [
            i.mobile,
            carrier_name(i.initial),
            carrier_name(i.current),
            yes_no(i.ported),
            yes_no(i.virtual),
            i.area,
        ]
        table.append([*row, source] if with_source else row)
    print(format_table([*headers, "source"] if with_source else headers, table))
