"""Guard the public API: `smsroute.__all__` is complete, importable and stable."""

from __future__ import annotations

import types

import smsroute

STABLE = {
    "Carrier",
    "normalize",
    "InvalidNumber",
    "initial_carrier",
    "CarrierClient",
    "CarrierInfo",
    "Balance",
    "SmsRouteError",
    "LookupFailed",
    "ApiError",
    "RequestRejected",
    "Unauthorized",
    "NumberNotFound",
    "BalanceExhausted",
    "ServiceError",
    "TransportError",
    "CircuitOpen",
    "NoRoute",
    "ConfigurationError",
    "Router",
    "Decision",
    "MemoryCache",
    "CacheBackend",
    "WrongCarrier",
}


def test_all_names_are_importable():
    """Every name in __all__ resolves on the package."""
    for name in smsroute.__all__:
        assert hasattr(smsroute, name), name


def test_all_has_no_duplicates():
    """__all__ lists each name once."""
    assert len(smsroute.__all__) == len(set(smsroute.__all__))


def test_all_matches_public_names():
    """__all__ lists exactly the public names the package defines (httpx's guard test)."""
    exported = set(smsroute.__all__)
    for name in exported:
        getattr(smsroute, name)  # resolve lazy exports (RedisCache) first
    public = {
        name
        for name, value in vars(smsroute).items()
        if not name.startswith("_")
        # Submodules imported by other submodules appear as attributes; only the
        # ones the package chooses to re-export belong to the API.
        and (not isinstance(value, types.ModuleType) or name in exported)
    }
    assert public == exported - {"__version__"}


def test_stable_names_are_exported():
    """The names code outside this repository is written against stay exported."""
    assert set(smsroute.__all__) >= STABLE


def test_exported_classes_say_where_they_live():
    """Exported classes and functions come from smsroute's own modules."""
    for name in set(smsroute.__all__) - {"__version__"}:
        value = getattr(smsroute, name)
        module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        assert module.startswith("smsroute"), (name, module)


def test_version_is_a_string():
    """__version__ is exported and looks like a release number."""
    assert "__version__" in smsroute.__all__
    assert smsroute.__version__.count(".") >= 1
