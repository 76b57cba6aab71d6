"""The settings value: the frozen tables of an ``smsroute.toml``, and reading a file into them.

:func:`load_settings` reads a TOML file; :meth:`Settings.from_dict` checks
already parsed data. Every bad value is a ConfigurationError naming the
table and key; see ``docs/config.md`` for every key. A key written in the
file (``[vendor] apikey``, client keys, a Redis URL with a password) makes
the file a secret: it is refused when group or others may read it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from smsroute.carrier import Carrier
from smsroute.clientconf import DEFAULT_BASE_URL
from smsroute.config.table import Table, check_tables
from smsroute.core.freshness import CachePolicy
from smsroute.core.policy import RoutingPolicy, Rule
from smsroute.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "DEFAULT_APIKEY_ENV",
    "DEFAULT_PORT",
    "MIN_KEY_LENGTH",
    "CacheSettings",
    "ClientKey",
    "ServeSettings",
    "Settings",
    "VendorSettings",
    "load_settings",
]

DEFAULT_PORT: Final = 8780
DEFAULT_APIKEY_ENV: Final = "SMSROUTE_APIKEY"
MIN_KEY_LENGTH: Final = 16  # a client key guards a paid balance: no short passwords
_TABLES: Final = ("vendor", "routing", "gateways", "rules", "cache", "serve", "kannel")
_BACKENDS: Final = ("memory", "sqlite", "redis")
_COMPAT: Final = ("fallback", "pass")


@dataclass(frozen=True)
class VendorSettings:
    """``[vendor]``: the lookup API, its key and its rate limit."""

    apikey: str | None = field(default=None, repr=False)
    """The key, from the file or from ``apikey_env`` (None when that variable is unset)."""
    apikey_env: str | None = DEFAULT_APIKEY_ENV
    base_url: str = DEFAULT_BASE_URL
    method: str = "POST"
    timeout: float | tuple[float, float] | None = None
    qps: float | None = None
    burst: float | None = None


@dataclass(frozen=True)
class CacheSettings:
    """``[cache]``: where answers are kept and for how long."""

    backend: str = "memory"
    path: str | None = None
    url: str | None = field(default=None, repr=False)  # may hold a Redis password
    prefix: str = "smsroute:"
    maxsize: int = 100_000
    policy: CachePolicy = field(default_factory=CachePolicy)
    threads: int = 64
    """Worker threads for a blocking cache's I/O (sqlite, redis) under an event loop."""


@dataclass(frozen=True)
class ClientKey:
    """One caller of the HTTP service: its name (for logs), key and limits."""

    name: str
    key: str = field(repr=False)
    qps: float | None = None
    burst: float | None = None
    daily_queries: int | None = None
    """Paid vendor queries the caller may cause per day; past it, its misses fall back."""


@dataclass(frozen=True)
class ServeSettings:
    """``[serve]``: the HTTP service's address, callers and limits."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    clients: tuple[ClientKey, ...] = ()
    drain_seconds: float = 10.0
    max_batch: int = 1000
    compat_errors: str = "fallback"
    max_body: int = 256 * 1024
    max_header: int = 8190
    read_timeout: float = 10.0
    idle_timeout: float = 60.0
    balance_ttl: float = 5.0
    balance_interval: float = 60.0
    access_log: bool = True
    event_loop: str = "auto"
    """``auto`` (uvloop when it is installed), ``asyncio`` or ``uvloop``."""


@dataclass(frozen=True)
class Settings:
    """Everything an ``smsroute.toml`` says, checked; :meth:`copy` makes variants."""

    vendor: VendorSettings = field(default_factory=VendorSettings)
    policy: RoutingPolicy = field(
        default_factory=lambda: RoutingPolicy({c: c.value for c in Carrier})
    )
    deadline: float = 0.5
    segments: str | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    kannel_url: str | None = None
    kannel_timeout: float = 5.0
    source: str = "<settings>"
    """Where the settings came from (the file's path), for messages."""
    written: frozenset[str] = frozenset()
    """The keys the data gave, as ``"table.key"`` (``"routing.deadline"``), so that a
    front end with defaults of its own (``smsroute route``) applies only those.

    .. versionadded:: 0.2.0
    """

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<settings>",
        environ: Mapping[str, str] | None = None,
        private: bool = True,
        base: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Build settings from parsed TOML; ``private=False`` refuses keys written in the data.

        Relative file paths (``[routing] segments``, ``[cache] path``) are taken
        relative to ``base`` (:func:`load_settings` passes the file's folder).
        """
        env = os.environ if environ is None else environ
        check_tables(data, _TABLES)
        routing = Table("routing", data.get("routing", {}))
        deadline = routing.number("deadline", 0.5, positive=True)
        segments_path = _path(routing.text("segments", None), base)
        virtual = routing.text("virtual", "host")
        default = routing.text("default", None)
        policy = _policy(data, virtual, default)
        routing.done()
        kannel = Table("kannel", data.get("kannel", {}))
        kannel_url = kannel.text("sendsms_url", None)
        if kannel_url is not None:
            _check_url(kannel_url, "[kannel] sendsms_url")
        kannel_timeout = kannel.number("timeout", 5.0, positive=True)
        kannel.done()
        return cls(
            vendor=_vendor(Table("vendor", data.get("vendor", {})), env, private),
            policy=policy,
            deadline=deadline,
            segments=segments_path,
            cache=_cache(Table("cache", data.get("cache", {})), private, base),
            serve=_serve(Table("serve", data.get("serve", {})), env, private),
            kannel_url=kannel_url,
            kannel_timeout=kannel_timeout,
            source=source,
            written=frozenset(
                f"{name}.{key}"
                for name, table in data.items()
                if isinstance(table, Mapping)
                for key in table
            ),
        )

    def copy(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


def load_settings(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and check a TOML settings file (``environ`` defaults to ``os.environ``)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{p}: no such file") from None
    except OSError as exc:
        raise ConfigurationError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{p}: not valid TOML: {exc}") from None
    try:
        return Settings.from_dict(
            data, source=str(p), environ=environ, private=_is_private(p), base=p.parent
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{p}: {exc}") from None


def _path(text: str | None, base: str | os.PathLike[str] | None) -> str | None:
    """Return a path from the file: ``~`` expanded, a relative one taken from ``base``."""
    if text is None:
        return None
    path = Path(text).expanduser()
    return str(path if base is None or path.is_absolute() else Path(base) / path)


def _is_private(path: Path) -> bool:
    """Return True when only the owner may read the file (always True off POSIX)."""
    if os.name != "posix":
        return True
    try:
        return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    except OSError:
        return False


def _refuse_public(private: bool, where: str) -> None:
    if not private:
        raise ConfigurationError(
            f"{where}: the file holds a key but group or others may read it:"
            " chmod 600 the file, or name an environment variable instead"
        )


# -- the tables ------------------------------------------------------------------------


def _vendor(t: Table, env: Mapping[str, str], private: bool) -> VendorSettings:
    apikey = t.text("apikey", None, secret=True)
    apikey_env = t.text("apikey_env", None)
    if apikey is not None and apikey_env is not None:
        raise ConfigurationError("[vendor] apikey: give apikey or apikey_env, not both")
    if apikey is not None:
        _refuse_public(private, "[vendor] apikey")
        if not apikey.strip():
            raise ConfigurationError("[vendor] apikey: is empty")
    else:
        apikey_env = apikey_env or DEFAULT_APIKEY_ENV
        apikey = env.get(apikey_env, "").strip() or None
    base_url = t.text("base_url", DEFAULT_BASE_URL)
    _check_url(base_url, "[vendor] base_url")
    method = t.text("method", "POST").upper()
    if method not in ("POST", "GET"):
        raise ConfigurationError(f"[vendor] method: must be POST or GET, not {method!r}")
    timeout = t.timeout("timeout")
    qps = t.number("qps", None, positive=True)
    burst = t.number("burst", None, minimum=1.0)
    if burst is not None and qps is None:
        raise ConfigurationError("[vendor] burst: needs qps")
    t.done()
    return VendorSettings(apikey, apikey_env, base_url.rstrip("/"), method, timeout, qps, burst)


def _policy(data: Mapping[str, Any], virtual: str, default: str | None) -> RoutingPolicy:
    raw_gateways = data.get("gateways")
    if raw_gateways is None:
        # No [gateways]: the gateway is the operator's name, as in `smsroute route`.
        gateways: dict[Carrier | str, str] = {c: c.value for c in Carrier}
    else:
        # Each value must be text (a gateway id); the keys are read, checked
        # and suggested for by RoutingPolicy itself, like the library's.
        g = Table("gateways", raw_gateways)
        gateways = {key: g.need_text(key) for key in list(g.data)}
        if not gateways:
            raise ConfigurationError("[gateways]: is empty (leave the table out to route by name)")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, Mapping) for r in raw_rules):
        raise ConfigurationError("[[rules]]: must be a list of tables ([[rules]] blocks)")
    rules = tuple(_rule(i, r) for i, r in enumerate(raw_rules, 1))
    try:
        return RoutingPolicy(gateways, default=default, virtual=virtual, rules=rules)
    except ConfigurationError as exc:  # the policy's own checks, with their hints
        table = "[routing]" if str(exc).startswith("virtual:") else "[gateways]"
        raise ConfigurationError(f"{table} {exc}") from None


def _rule(index: int, data: Mapping[str, Any]) -> Rule:
    t = Table("rules", data, index=index)
    t.need_text("gateway")
    for key in ("carrier", "province"):
        value = t.get(key)
        items = [value] if isinstance(value, str) else value
        if value is not None and not (
            isinstance(items, list) and items and all(isinstance(v, str) for v in items)
        ):
            t.fail(key, "must be text or a list of text")
        if key == "carrier" and items:
            for item in items:
                if Carrier.parse(item) is None:
                    t.fail(key, f"{item!r} is not an operator (移动, 联通, 电信, 广电)")
    t.flag("ported", None)
    t.flag("virtual", None)
    t.done()
    return Rule.from_dict(data)


def _cache(t: Table, private: bool, base: str | os.PathLike[str] | None) -> CacheSettings:
    backend = t.text("backend", "memory", choices=_BACKENDS)
    path = _path(t.text("path", None), base)
    url = t.text("url", None, secret=True)
    prefix = t.text("prefix", "smsroute:")
    maxsize = t.integer("maxsize", 100_000, minimum=1)
    durations = {k: t.number(k, None, minimum=0.0) for k in ("ttl", "negative_ttl", "stale_ttl")}
    threads = t.integer("threads", 64, minimum=1, maximum=1024)
    t.done()
    if backend == "redis":
        if url is None:
            raise ConfigurationError('[cache] url: backend = "redis" needs url = "redis://..."')
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError("[cache] url: must be a redis://, rediss:// or unix:// URL")
        if parts.password:
            _refuse_public(private, "[cache] url")
    elif url is not None:
        raise ConfigurationError(f'[cache] url: only for backend = "redis", not {backend!r}')
    if path is not None and backend != "sqlite":
        raise ConfigurationError(f'[cache] path: only for backend = "sqlite", not {backend!r}')
    try:
        policy = CachePolicy.from_dict({k: v for k, v in durations.items() if v is not None})
    except ValueError as exc:  # pragma: no cover - Table.number checked each value
        raise ConfigurationError(f"[cache] {exc}") from None
    return CacheSettings(backend, path, url, prefix, maxsize, policy, threads)


def _serve(t: Table, env: Mapping[str, str], private: bool) -> ServeSettings:
    host = t.text("host", "127.0.0.1")
    if not host.strip():
        raise ConfigurationError("[serve] host: is empty")
    port = t.integer("port", DEFAULT_PORT, minimum=0, maximum=65535)
    workers = t.integer("workers", 1, minimum=1, maximum=256)
    clients = _clients(t, env, private)
    drain = t.number("drain_seconds", 10.0, minimum=0.0)
    max_batch = t.integer("max_batch", 1000, minimum=1)
    compat = t.text("compat_errors", "fallback", choices=_COMPAT)
    max_body = t.integer("max_body", 256 * 1024, minimum=1024)
    max_header = t.integer("max_header", 8190, minimum=1024)
    read_timeout = t.number("read_timeout", 10.0, positive=True)
    idle_timeout = t.number("idle_timeout", 60.0, positive=True)
    balance_ttl = t.number("balance_ttl", 5.0, minimum=0.0)
    balance_interval = t.number("balance_interval", 60.0, minimum=0.0)
    access_log = t.flag("access_log", True)
    event_loop = t.text("event_loop", "auto", choices=("auto", "asyncio", "uvloop"))
    t.done()
    return ServeSettings(
        host.strip(),
        port,
        workers,
        clients,
        drain,
        max_batch,
        compat,
        max_body,
        max_header,
        read_timeout,
        idle_timeout,
        balance_ttl,
        balance_interval,
        bool(access_log),
        event_loop,
    )


def _clients(t: Table, env: Mapping[str, str], private: bool) -> tuple[ClientKey, ...]:
    found: list[tuple[str, ClientKey]] = []  # (where it was written, the client)
    keys = t.get("client_keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            t.fail("client_keys", "must be a list of text")
        if keys:
            _refuse_public(private, "[serve] client_keys")
        found.extend(
            (f"[serve] client_keys #{i}", ClientKey(f"key{i}", k)) for i, k in enumerate(keys, 1)
        )
    tables = t.get("clients")
    if tables is not None:
        if not isinstance(tables, list) or not all(isinstance(c, Mapping) for c in tables):
            raise ConfigurationError("[[serve.clients]]: must be a list of tables")
        found.extend(
            (f"[[serve.clients]] #{i}", _client(i, c, env, private))
            for i, c in enumerate(tables, 1)
        )
    names: set[str] = set()
    seen: set[str] = set()
    for where, client in found:
        if len(client.key) < MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"{where}: the key is shorter than {MIN_KEY_LENGTH} characters"
            )
        if client.key in seen:
            raise ConfigurationError(f"{where}: the same key is given twice")
        if client.name in names:
            raise ConfigurationError(f"{where} name: {client.name!r} is given twice")
        seen.add(client.key)
        names.add(client.name)
    return tuple(client for _where, client in found)


def _client(
    index: int, data: Mapping[str, Any], env: Mapping[str, str], private: bool
) -> ClientKey:
    t = Table("serve.clients", data, index=index)
    name = t.need_text("name")
    key = t.text("key", None, secret=True)
    key_env = t.text("key_env", None)
    where = f"[[serve.clients]] #{index}"
    if (key is None) == (key_env is None):
        raise ConfigurationError(f"{where}: give key or key_env (one of them)")
    if key is not None:
        _refuse_public(private, f"{where} key")
    else:
        assert key_env is not None
        key = env.get(key_env, "").strip()
        if not key:
            raise ConfigurationError(f"{where} key_env: ${key_env} is not set")
    qps = t.number("qps", None, positive=True)
    burst = t.number("burst", None, minimum=1.0)
    daily = t.integer("daily_queries", None, minimum=0)
    t.done()
    return ClientKey(name, key, qps, burst, daily)


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{where}: must be an http:// or https:// URL")
