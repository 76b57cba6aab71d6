"""Tests for smsroute.config: the settings file, its checks naming the key, and the builders."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from smsroute import Carrier, ConfigurationError, MemoryCache, RoutingPolicy, Rule, SqliteCache
from smsroute.config import (
    Settings,
    build_async_client,
    build_async_router,
    build_cache,
    build_client,
    build_router,
    build_segments,
    load_settings,
)
from smsroute.core.freshness import CachePolicy
from smsroute.ratelimit import RateLimit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "smsroute.toml"
KEY = "vendor-key-0123456789"
ENV = {
    "SMSROUTE_APIKEY": KEY,
    "SMSROUTE_KEY_BILLING": "billing-key-0123456789",
    "SMSROUTE_KEY_MARKETING": "marketing-key-0123456789",
}


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    """Write a settings file with the given permissions."""
    path = tmp_path / "smsroute.toml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_the_shipped_example_loads_as_written():
    """examples/smsroute.toml is a complete, valid file (keys from the environment)."""
    s = load_settings(EXAMPLE, environ=ENV)
    assert s.vendor.apikey == KEY
    assert s.vendor.apikey_env == "SMSROUTE_APIKEY"
    assert s.vendor.timeout == (2.0, 3.0)
    assert s.vendor.qps == 50
    assert s.deadline == 0.5
    assert s.policy.gateways[Carrier.TELECOM] == "SMGP"
    assert s.policy.default == "CMPP-DEFAULT"
    assert s.policy.rules[0] == Rule("GD-CT-DIRECT", carrier="电信", province="广东")
    assert s.policy.rules[1].ported is True
    assert s.cache.backend == "sqlite"
    assert s.cache.policy == CachePolicy(ttl=604800, negative_ttl=3600, stale_ttl=2592000)
    assert s.serve.host == "127.0.0.1"
    assert s.serve.port == 8780
    assert [c.name for c in s.serve.clients] == ["billing", "marketing"]
    assert s.serve.clients[0].key == ENV["SMSROUTE_KEY_BILLING"]
    assert s.serve.clients[0].daily_queries == 50000
    assert s.kannel_url is None
    assert s.source == str(EXAMPLE)


def test_defaults_without_a_file():
    """Empty settings: loopback, port 8780, memory cache, gateways named after operators."""
    s = Settings.from_dict({}, environ={"SMSROUTE_APIKEY": KEY})
    assert (s.serve.host, s.serve.port, s.serve.workers) == ("127.0.0.1", 8780, 1)
    assert s.serve.clients == ()
    assert s.serve.max_batch == 1000
    assert s.serve.drain_seconds == 10
    assert s.serve.compat_errors == "fallback"
    assert s.cache.backend == "memory"
    assert s.policy.route(0) is not None
    assert s.policy.gateways[Carrier.MOBILE] == "移动"
    assert s.vendor.apikey == KEY


def test_repr_never_shows_a_key():
    """Keys (vendor, clients, a Redis URL) stay out of the settings' repr."""
    s = Settings.from_dict(
        {
            "vendor": {"apikey": KEY},
            "serve": {"client_keys": ["client-key-0123456789"]},
            "cache": {"backend": "redis", "url": "redis://:hunter2@127.0.0.1:1/0"},
        }
    )
    text = repr(s)
    assert KEY not in text
    assert "client-key" not in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"routing": {"deadline": -1}}, "[routing] deadline: must be a positive number"),
        ({"routing": {"deadline": "fast"}}, "[routing] deadline: must be a positive number"),
        ({"routing": {"deadline": True}}, "[routing] deadline: must be a positive number"),
        ({"routing": {"dedline": 1}}, "[routing] dedline: unknown key (did you mean 'deadline'?)"),
        ({"routing": {"virtual": "mvno"}}, "[routing] virtual: 'mvno' is not 'host'"),
        ({"routing": {"virtual": 3}}, "[routing] virtual: must be text"),
        ({"servre": {}}, "[servre]: unknown table (did you mean [serve]?)"),
        ({"serve": 3}, "serve: must be a table"),
        ({"serve": {"port": "x"}}, "[serve] port: must be a whole number"),
        ({"serve": {"port": 70000}}, "[serve] port: must be at most 65535"),
        ({"serve": {"workers": 0}}, "[serve] workers: must be at least 1"),
        ({"serve": {"max_batch": 10.5}}, "[serve] max_batch: must be a whole number"),
        ({"serve": {"compat_errors": "ignore"}}, "[serve] compat_errors: must be one of"),
        ({"serve": {"access_log": "yes"}}, "[serve] access_log: must be true or false"),
        ({"serve": {"client_keys": "abc"}}, "[serve] client_keys: must be a list of text"),
        ({"serve": {"client_keys": ["short"]}}, "[serve] client_keys #1: the key is shorter"),
        (
            {"serve": {"client_keys": ["k" * 16, "k" * 16]}},
            "[serve] client_keys #2: the same key is given twice",
        ),
        ({"serve": {"clients": [{"key": "k" * 16}]}}, "[[serve.clients]] #1 name: is missing"),
        (
            {"serve": {"clients": [{"name": "a"}]}},
            "[[serve.clients]] #1: give key or key_env",
        ),
        (
            {"serve": {"clients": [{"name": "a", "key": "k" * 16, "qsp": 3}]}},
            "[[serve.clients]] #1 qsp: unknown key (did you mean 'qps'?)",
        ),
        (
            {"serve": {"clients": [{"name": "a", "key_env": "NOPE_NOT_SET"}]}},
            "[[serve.clients]] #1 key_env: $NOPE_NOT_SET is not set",
        ),
        ({"gateways": {"移动": 1}}, "[gateways] 移动: must be text"),
        ({"gateways": {"移动": "a", "cmcc": "b"}}, "[gateways] cmcc: 移动 has a gateway already"),
        ({"gateways": {}}, "[gateways]: is empty"),
        ({"rules": {"gateway": "x"}}, "[[rules]]: must be a list of tables"),
        ({"rules": [{"carrier": "电信"}]}, "[[rules]] #1 gateway: is missing"),
        ({"rules": [{"gateway": "x", "carier": "电信"}]}, "[[rules]] #1 carier: unknown key"),
        ({"rules": [{"gateway": "x", "carrier": "移懂"}]}, "[[rules]] #1 carrier: '移懂' is not"),
        ({"rules": [{"gateway": "x", "ported": "yes"}]}, "[[rules]] #1 ported: must be true"),
        ({"rules": [{"gateway": "x", "province": 3}]}, "[[rules]] #1 province: must be text"),
        ({"cache": {"backend": "redsi"}}, "[cache] backend: must be one of 'memory'"),
        ({"cache": {"backend": "redis"}}, '[cache] url: backend = "redis" needs url'),
        ({"cache": {"backend": "redis", "url": "http://x"}}, "[cache] url: must be a redis://"),
        ({"cache": {"url": "redis://x"}}, '[cache] url: only for backend = "redis"'),
        ({"cache": {"path": "/tmp/x"}}, '[cache] path: only for backend = "sqlite"'),
        ({"cache": {"ttl": -5}}, "[cache] ttl: must be at least 0"),
        ({"cache": {"maxsize": 0}}, "[cache] maxsize: must be at least 1"),
        ({"vendor": {"apikey": KEY, "apikey_env": "X"}}, "[vendor] apikey: give apikey or"),
        ({"vendor": {"apikey": 12345}}, "[vendor] apikey: must be text"),
        ({"vendor": {"method": "PUT"}}, "[vendor] method: must be POST or GET"),
        ({"vendor": {"base_url": "isp.qxt800.com"}}, "[vendor] base_url: must be an http://"),
        ({"vendor": {"qps": 0}}, "[vendor] qps: must be a positive number"),
        ({"vendor": {"burst": 5}}, "[vendor] burst: needs qps"),
        ({"vendor": {"timeout": [1, 2, 3]}}, "[vendor] timeout: must be seconds, or [connect"),
        ({"kannel": {"sendsms_url": "ftp://x"}}, "[kannel] sendsms_url: must be an http://"),
        ({"kannel": {"url": "http://x"}}, "[kannel] url: unknown key"),
    ],
)
def test_every_bad_value_names_its_key(data, message):
    """A bad value raises ConfigurationError starting with the table and key it is about."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_dict(data, environ={})
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_mistyped_secret_is_not_echoed():
    """A key of the wrong type is refused without showing its value."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_dict({"vendor": {"apikey": 1234567890123}}, environ={})
    assert "1234567890123" not in str(caught.value)


def test_an_unknown_key_far_from_any_lists_the_known_ones():
    """With no near match, the hint lists the table's keys."""
    with pytest.raises(ConfigurationError, match=r"\(known: .*deadline.*\)"):
        Settings.from_dict({"routing": {"zzzzzz": 1}})


def test_a_key_in_a_file_others_can_read_is_refused(tmp_path):
    """[vendor] apikey in a 0644 file is refused; in a 0600 file it is used."""
    text = f'[vendor]\napikey = "{KEY}"\n'
    with pytest.raises(ConfigurationError, match=r"\[vendor\] apikey: the file holds a key"):
        load_settings(write(tmp_path, text, 0o644))
    assert load_settings(write(tmp_path, text, 0o600)).vendor.apikey == KEY


@pytest.mark.parametrize(
    "text",
    [
        '[serve]\nclient_keys = ["client-key-0123456789"]\n',
        '[[serve.clients]]\nname = "a"\nkey = "client-key-0123456789"\n',
        '[cache]\nbackend = "redis"\nurl = "redis://:pw@127.0.0.1:6379/0"\n',
    ],
    ids=["client_keys", "clients", "redis-password"],
)
def test_every_secret_in_the_file_needs_a_private_file(tmp_path, text):
    """Client keys and a Redis password make the file a secret too."""
    with pytest.raises(ConfigurationError, match="the file holds a key"):
        load_settings(write(tmp_path, text, 0o640), environ={})


def test_file_errors_say_the_file(tmp_path):
    """A missing file, bad TOML and bad UTF-8 are one line naming the file."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigurationError, match=r"nope\.toml: no such file"):
        load_settings(missing)
    bad = write(tmp_path, "[routing]\ndeadline = \n")
    with pytest.raises(ConfigurationError, match=r"smsroute\.toml: not valid TOML: .*line 2"):
        load_settings(bad)
    bad.write_bytes(b"[routing]\n# \xff\n")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_settings(bad)
    bad.write_text("[routing]\ndeadline = 0\n")
    with pytest.raises(ConfigurationError, match=r"smsroute\.toml: \[routing\] deadline"):
        load_settings(bad)


def test_gateway_keys_take_any_spelling_and_extra_keys():
    """[gateways] reads 中国移动 / CMCC as 移动; other keys (mvno) are extra gateways."""
    s = Settings.from_dict(
        {
            "gateways": {"中国移动": "CMPP", "China Unicom": "SGIP", "mvno": "MV"},
            "routing": {"virtual": "mvno"},
        }
    )
    assert s.policy == RoutingPolicy(
        {Carrier.MOBILE: "CMPP", Carrier.UNICOM: "SGIP", "mvno": "MV"}, virtual="mvno"
    )


def test_client_keys_and_clients_together():
    """client_keys and [[serve.clients]] combine; names must differ."""
    s = Settings.from_dict(
        {
            "serve": {
                "client_keys": ["a-key-0123456789ab"],
                "clients": [{"name": "billing", "key_env": "K", "qps": 5, "daily_queries": 9}],
            }
        },
        environ={"K": "b-key-0123456789ab"},
    )
    assert [(c.name, c.qps, c.daily_queries) for c in s.serve.clients] == [
        ("key1", None, None),
        ("billing", 5.0, 9),
    ]


def test_missing_apikey_is_a_build_error_naming_the_variable():
    """Settings load without the key (a segment lookup needs none); building the client says so."""
    s = Settings.from_dict({"vendor": {"apikey_env": "MY_KEY"}}, environ={})
    assert s.vendor.apikey is None
    with pytest.raises(ConfigurationError, match=r"\[vendor\] apikey_env: \$MY_KEY is not set"):
        build_async_client(s)
    with pytest.raises(ConfigurationError, match=r"\$MY_KEY"):
        build_client(s)


def test_build_the_clients():
    """The async client takes the vendor's qps (split across workers); the blocking one too."""
    s = Settings.from_dict(
        {
            "vendor": {
                "apikey": KEY,
                "base_url": "http://127.0.0.1:9",
                "method": "GET",
                "qps": 40,
                "timeout": 2,
            }
        }
    )

    async def build():
        client = build_async_client(s, share=4)
        try:
            return client.base_url, client.method, client.timeout, client.rate_limit
        finally:
            await client.aclose()

    base_url, method, timeout, limit = asyncio.run(build())
    assert (base_url, method, timeout) == ("http://127.0.0.1:9", "GET", 2.0)
    assert isinstance(limit, RateLimit)
    assert limit.qps == 10
    sync = build_client(s)
    assert (sync.base_url, sync.method) == ("http://127.0.0.1:9", "GET")
    assert KEY not in repr(sync)


def test_build_the_caches(tmp_path):
    """memory, sqlite and redis backends carry the [cache] policy."""
    memory = build_cache(Settings.from_dict({"cache": {"maxsize": 7, "ttl": 60}}))
    assert isinstance(memory, MemoryCache)
    assert (memory.maxsize, memory.policy.ttl) == (7, 60)
    path = tmp_path / "answers.sqlite3"
    sqlite = build_cache(Settings.from_dict({"cache": {"backend": "sqlite", "path": str(path)}}))
    try:
        assert isinstance(sqlite, SqliteCache)
        assert path.exists()
    finally:
        sqlite.close()
    redis = build_cache(
        Settings.from_dict({"cache": {"backend": "redis", "url": "redis://127.0.0.1:1/0"}})
    )
    try:
        assert type(redis).__name__ == "RedisCache"
        assert redis.prefix == "smsroute:"
    finally:
        redis.close()


def test_an_unusable_sqlite_path_is_a_configuration_error(tmp_path):
    """A cache file that cannot be made names [cache] path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = Settings.from_dict({"cache": {"backend": "sqlite", "path": str(blocker / "a.sqlite3")}})
    with pytest.raises(ConfigurationError, match=r"\[cache\] path: "):
        build_cache(s)


def test_build_the_routers(tmp_path):
    """Both routers take the policy, the deadline and the segment table of the settings."""
    table = tmp_path / "segments.tsv"
    shipped = ROOT / "smsroute" / "data" / "segments.tsv"
    table.write_bytes(shipped.read_bytes())
    s = Settings.from_dict(
        {
            "vendor": {"apikey": KEY},
            "routing": {"deadline": 0.25, "segments": str(table)},
            "gateways": {"移动": "CMPP"},
        }
    )
    sync = build_router(s, build_client(s), MemoryCache())
    assert sync.deadline == 0.25
    assert sync.policy == s.policy
    aio = build_async_router(s, object(), MemoryCache())
    assert aio.deadline == 0.25
    assert build_segments(s) is not None
    missing = s.copy(segments=str(tmp_path / "nope.tsv"))
    with pytest.raises(ConfigurationError, match=r"\[routing\] segments: "):
        build_segments(missing)


def test_settings_copy_makes_a_variant():
    """copy() changes fields and leaves the original alone."""
    s = Settings.from_dict({})
    t = s.copy(deadline=2.0)
    assert (s.deadline, t.deadline) == (0.5, 2.0)
    assert CachePolicy() == s.cache.policy


def test_relative_paths_are_taken_from_the_files_folder(tmp_path, monkeypatch):
    """[routing] segments and [cache] path are relative to the settings file, not the cwd."""
    folder = tmp_path / "etc"
    folder.mkdir()
    text = (
        '[routing]\nsegments = "tables/newer.tsv"\n'
        '[cache]\nbackend = "sqlite"\npath = "answers.sqlite3"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings(write(folder, text), environ={})
    assert s.segments == str(folder / "tables" / "newer.tsv")
    assert s.cache.path == str(folder / "answers.sqlite3")
    absolute = load_settings(
        write(folder, f'[routing]\nsegments = "{tmp_path / "t.tsv"}"\n'), environ={}
    )
    assert absolute.segments == str(tmp_path / "t.tsv")
    home = load_settings(write(folder, '[routing]\nsegments = "~/t.tsv"\n'), environ={})
    assert home.segments == str(Path.home() / "t.tsv")
    # Data parsed already has no folder: its paths stay as written.
    assert Settings.from_dict({"routing": {"segments": "t.tsv"}}).segments == "t.tsv"
    assert Settings.from_dict({"routing": {"segments": "t.tsv"}}, base="/x").segments == "/x/t.tsv"


def test_settings_say_which_keys_the_file_wrote():
    """Settings.written lists the keys given, so a front end keeps its own defaults for the rest."""
    s = Settings.from_dict(
        {"routing": {"deadline": 1}, "gateways": {"移动": "CMPP"}, "rules": [{"gateway": "X"}]},
        environ={},
    )
    assert s.written == {"routing.deadline", "gateways.移动"}
    assert Settings.from_dict({}, environ={}).written == frozenset()


def test_the_blocking_client_takes_the_vendor_qps_and_client_keywords():
    """build_client gives CarrierClient the [vendor] rate limit and passes other keywords on."""
    s = Settings.from_dict(
        {"vendor": {"qps": 8, "burst": 2, "base_url": "http://127.0.0.1:9"}}, environ=ENV
    )
    client = build_client(s, pool_maxsize=3)
    try:
        assert isinstance(client.rate_limit, RateLimit)
        assert client.rate_limit.qps == 8
    finally:
        client.close()
    plain = build_client(Settings.from_dict({}, environ=ENV))
    assert plain.rate_limit is None
    plain.close()
