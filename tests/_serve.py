"""Helpers of the smsroute serve tests: settings against a fake vendor, an app on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer

from smsroute.config import Settings
from smsroute.serve.app import SERVICE, create_app
from smsroute.serve.service import Service

T = TypeVar("T")

CLIENT_KEY = "client-key-billing-0001"
OTHER_KEY = "client-key-marketing-02"
PORTED = "13972565391"  # the vendor document's number: 移动 -> 电信, 湖北-宜昌
PLAIN = "13800138000"  # 移动, pinned as not ported
UNICOM = "18612345678"  # 联通
VIRTUAL = "17091234567"  # 1709: a virtual operator on 联通's network


def settings_for(vendor: Any, **tables: Mapping[str, Any] | list[Any]) -> Settings:
    """Return settings against a fake vendor; ``tables`` replace or extend the defaults."""
    data: dict[str, Any] = {
        "vendor": {"apikey": vendor.apikey, "base_url": vendor.url},
        "serve": {"balance_interval": 0},
    }
    for name, table in tables.items():
        if isinstance(table, Mapping) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **table}
        else:
            data[name] = table
    return Settings.from_dict(data, environ={})


def keyed(vendor: Any, **serve: Any) -> Settings:
    """Return settings with two client keys (``billing`` and ``marketing``)."""
    clients = [
        {"name": "billing", "key": CLIENT_KEY, **serve.pop("billing", {})},
        {"name": "marketing", "key": OTHER_KEY},
    ]
    return settings_for(vendor, serve={"clients": clients, **serve})


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, **kwargs: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Service]]:
    """Serve the app of ``settings`` on 127.0.0.1; yield a client and the app's Service."""
    app = create_app(settings, **kwargs)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, app[SERVICE]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def bearer(key: str = CLIENT_KEY) -> dict[str, str]:
    """Return the Authorization header of a client key."""
    return {"Authorization": f"Bearer {key}"}
