"""``--config FILE`` and ``--segments FILE``: the settings file ``serve`` reads, with flags over it.

``route`` and ``lookup`` read the same ``smsroute.toml`` as ``smsroute
serve``, through :func:`smsroute.config.load_settings` (the one parser and
its checks); a flag given on the command line replaces what the file says.
What the file leaves out falls back as without it: the vendor's base URL to
``$SMSROUTE_BASE_URL``, the deadline and the answers file to ``route``'s own
defaults. A bad file, a bad key or a bad segment table is a
ConfigurationError: one line naming the file and the key, exit status 2.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any

from smsroute import segments
from smsroute.cli.common import ENV_APIKEY, ENV_BASE_URL, EXIT_USAGE, CommandError
from smsroute.config import Settings, build_cache, build_segments, load_settings
from smsroute.errors import ConfigurationError

__all__ = [
    "add_config_argument",
    "add_segments_argument",
    "command_settings",
    "file_cache",
    "from_file",
    "require_apikey",
    "segment_table",
]


def add_config_argument(group: Any) -> None:
    """Add ``--config FILE`` to an argument group."""
    group.add_argument(
        "--config",
        metavar="FILE",
        help="the settings file smsroute serve reads (TOML: [vendor], [routing], [gateways], "
        "[[rules]], [cache]; see docs/config.md); flags given here override it",
    )


def add_segments_argument(group: Any) -> None:
    """Add ``--segments FILE`` to an argument group."""
    group.add_argument(
        "--segments",
        metavar="FILE",
        help="a segment table in the format of smsroute/data/segments.tsv, for segments "
        "allocated since this release (default: [routing] segments, else the built-in table)",
    )


def from_file(settings: Settings, key: str) -> bool:
    """Return True when the settings file wrote ``key`` (``"routing.deadline"``)."""
    return key in settings.written


def command_settings(args: argparse.Namespace) -> Settings:
    """Return the ``--config`` file's settings (or the defaults) with the flags given over them."""
    path = getattr(args, "config", None)
    settings = load_settings(path) if path else Settings.from_dict({})
    v = settings.vendor
    changes: dict[str, Any] = {}
    if args.apikey is not None:
        changes["apikey"] = args.apikey.strip() or None
    if args.base_url:
        changes["base_url"] = args.base_url.rstrip("/")
    elif not from_file(settings, "vendor.base_url") and os.environ.get(ENV_BASE_URL):
        changes["base_url"] = os.environ[ENV_BASE_URL].rstrip("/")
    if args.method is not None:
        changes["method"] = args.method
    if args.timeout is not None:
        changes["timeout"] = args.timeout
    qps = getattr(args, "qps", None)
    if qps is not None:
        changes["qps"], changes["burst"] = qps, None
    return settings.copy(vendor=dataclasses.replace(v, **changes))


def file_cache(settings: Settings) -> tuple[Any, Callable[[], None]] | None:
    """Return the cache of the file's ``[cache]`` and its close, when the file names a backend."""
    if not from_file(settings, "cache.backend"):
        return None
    try:
        cache = build_cache(settings)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{settings.source}: {exc}") from None
    return cache, getattr(cache, "close", lambda: None)


def require_apikey(settings: Settings) -> None:
    """Raise CommandError (exit 2) saying where the apikey comes from, when there is none."""
    v = settings.vendor
    if v.apikey:
        return
    if from_file(settings, "vendor.apikey_env"):
        where = f" ({settings.source}: [vendor] apikey_env)"
        raise CommandError(f"no apikey: pass --apikey KEY or set {v.apikey_env}{where}", EXIT_USAGE)
    raise CommandError(f"no apikey: pass --apikey KEY or set {ENV_APIKEY}", EXIT_USAGE)


def segment_table(args: argparse.Namespace, settings: Settings) -> segments.SegmentTable | None:
    """Return the table of --segments, else of ``[routing] segments``; None: the built-in one."""
    path = getattr(args, "segments", None)
    if path is None:
        try:
            return build_segments(settings)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{settings.source}: {exc}") from None
    try:
        return segments.load(path)
    except OSError as exc:
        raise CommandError(f"--segments {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except ConfigurationError as exc:
        raise CommandError(f"--segments: {exc}", EXIT_USAGE) from None
