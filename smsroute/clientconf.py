"""What both vendor clients check and hold at construction: the key, the method, the URL.

Written once for :class:`~smsroute.CarrierClient` (requests) and
``AsyncCarrierClient`` (aiohttp), so that the two refuse the same settings
with the same words and keep the apikey the same way: a :class:`Secret`
whose repr is masked, so tracebacks that show locals never show the key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from smsroute.errors import ConfigurationError
from smsroute.netaddr import is_loopback

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "ClientSettings", "Secret", "client_settings"]

DEFAULT_BASE_URL: Final = "https://isp.qxt800.com"
DEFAULT_TIMEOUT: Final = (2.0, 3.0)  # (connect, read) seconds; the vendor answers in ~10 ms


class Secret(str):
    """The apikey: its value goes on the wire, its repr shows in tracebacks' locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """The checked settings of a vendor client."""

    apikey: Secret
    base_url: str
    method: str
    host: str
    plain_http: bool
    """True for ``http://`` to a host that is not this machine: the key travels in clear."""

    def url(self, endpoint: str) -> str:
        """Return the full URL of ``/carrier`` or ``/balance``."""
        return self.base_url + endpoint


def client_settings(apikey: object, method: str, base_url: str) -> ClientSettings:
    """Return checked settings, or raise ConfigurationError naming what is wrong."""
    if not isinstance(apikey, str) or not apikey.strip():
        raise ConfigurationError("apikey is empty: pass the key the vendor issued")
    verb = method.upper() if isinstance(method, str) else method
    if verb not in ("POST", "GET"):
        raise ConfigurationError(f"method must be POST or GET, not {method!r}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
    plain = parts.scheme == "http" and not is_loopback(parts.hostname)
    return ClientSettings(Secret(apikey.strip()), base_url.rstrip("/"), verb, parts.hostname, plain)


def warn_plain_http(settings: ClientSettings, log: object, *, stacklevel: int = 3) -> None:
    """Warn (UserWarning and a log line) when the apikey would travel in clear."""
    if not settings.plain_http:
        return
    warnings.warn(
        f"smsroute: plain http:// to {settings.host}: the apikey travels in clear; use https://",
        UserWarning,
        stacklevel=stacklevel,
    )
    log.warning("client.insecure_transport", host=settings.host)  # type: ignore[attr-defined]
