"""RoutingPolicy: which gateway an answer goes to, as a frozen value.

The settings that decide a route (gateways, default, virtual-operator policy,
rules) live in one immutable value. Routing depends only on the answer code
(operator, province, port, virtual), so :meth:`RoutingPolicy.route` memoises
per code; a router that changes its settings is given a new policy, whose
memo starts empty, instead of resetting a memo shared with racing threads.
A policy also builds from plain data (:meth:`RoutingPolicy.from_dict`), which
is how the command line and the HTTP service load it from a TOML file.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.errors import ConfigurationError, NoRoute
from smsroute.segments import Segment

__all__ = ["DEFAULT_KEY", "VIRTUAL_POLICIES", "Route", "RoutingPolicy", "Rule", "province_of"]

VIRTUAL_POLICIES: Final = ("host", "reject")
"""``virtual=`` values that are not a gateway key: route by the host operator, or refuse."""

DEFAULT_KEY: Final = "default"
"""A gateways key that sets the default gateway (``{"移动": "CMPP", "default": "CMPP"}``)."""

# Official names of the autonomous regions and SARs, which end in neither 省 nor 市.
_REGION_SUFFIXES: Final = ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "特别行政区")
_MEMO_BOUND: Final = 65536  # distinct answer codes; junk areas must not grow it forever


def province_of(text: str) -> str:
    """Return the short province name: ``广东`` of ``广东省``, ``广西`` of ``广西壮族自治区``."""
    text = text.strip().removesuffix("省").removesuffix("市")
    for suffix in _REGION_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


@dataclass(frozen=True, slots=True)
class Rule:
    """Pick ``gateway`` when every given condition matches (None matches anything).

    ``carrier`` and ``province`` take one value or a collection. A condition
    the answer cannot tell (a segment-table fallback knows no province and no
    port) does not match.
    """

    gateway: Any
    carrier: Carrier | str | Collection[Carrier | str] | None = None
    province: str | Collection[str] | None = None
    ported: bool | None = None
    virtual: bool | None = None
    _carriers: frozenset[Carrier] | None = field(init=False, repr=False, compare=False)
    _provinces: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        carriers = None
        if self.carrier is not None:
            items = [self.carrier] if isinstance(self.carrier, str) else list(self.carrier)
            parsed = [Carrier.parse(c) for c in items]
            bad = [c for c, p in zip(items, parsed, strict=True) if p is None]
            if bad:
                raise ConfigurationError(f"rule names an unknown operator: {bad[0]!r}")
            carriers = frozenset(p for p in parsed if p is not None)
        provinces = None
        if self.province is not None:
            items = [self.province] if isinstance(self.province, str) else list(self.province)
            provinces = frozenset(province_of(p) for p in items)
        object.__setattr__(self, "_carriers", carriers)
        object.__setattr__(self, "_provinces", provinces)

    def matches(
        self, carrier: Carrier | None, province: str, ported: bool | None, virtual: bool
    ) -> bool:
        """Return True when the rule applies to an answer with these facts."""
        if self._carriers is not None and carrier not in self._carriers:
            return False
        if self._provinces is not None and (not province or province not in self._provinces):
            return False
        if self.ported is not None and ported != self.ported:
            return False
        return self.virtual is None or virtual == self.virtual

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Build a rule from plain data: ``gateway`` and optional ``carrier``, ``province``, ..."""
        allowed = {"gateway", "carrier", "province", "ported", "virtual"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigurationError(f"rule: unknown key {unknown[0]!r}")
        if "gateway" not in data:
            raise ConfigurationError("rule: gateway is missing")
        for key in ("ported", "virtual"):
            if key in data and not isinstance(data[key], bool):
                raise ConfigurationError(f"rule: {key} must be true or false")
        return cls(**data)


class Route(NamedTuple):
    """Where one answer goes: its operator and gateway, or why it cannot go anywhere."""

    carrier: Carrier | None
    gateway: Any
    refusal: str | None
    """None when routable; else the NoRoute message (without the number)."""


def _read_gateways(gateways: Mapping[Carrier | str, Any]) -> dict[Carrier | str, Any]:
    out: dict[Carrier | str, Any] = {}
    for key, value in gateways.items():
        carrier = Carrier.parse(key)
        if carrier is None and not isinstance(key, str):
            raise ConfigurationError(f"gateway key {key!r} is not an operator or a name")
        k: Carrier | str = carrier if carrier is not None else key
        if isinstance(k, str) and k.strip().lower() == DEFAULT_KEY:
            k = DEFAULT_KEY
        if k in out:
            raise ConfigurationError(f"{key}: {k} has a gateway already")
        out[k] = value
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - a gateway object with an odd __eq__ is simply not equal
        return False


def _check_keys(
    gateways: Mapping[Carrier | str, Any], virtual: str, rules: tuple[Rule, ...]
) -> None:
    """Refuse a gateway key that nothing can ever pick: no operator, not virtual=, no rule's.

    Such a key is nearly always a misspelt operator (``连通``, ``Moble``), and
    its numbers would get NoRoute after their lookup was paid for.
    """
    used = [getattr(rule, "gateway", None) for rule in rules]
    for key, value in gateways.items():
        if isinstance(key, Carrier) or key == virtual:
            continue
        if any(_same(key, g) or _same(value, g) for g in used):
            continue  # an extra gateway a rule sends to (by its key or its value)
        names = [DEFAULT_KEY, *(g for g in used if isinstance(g, str))]
        close = Carrier.suggest(key, names)
        if close is not None:
            carrier = Carrier.parse(close)
            named = f" ({carrier})" if carrier is not None and carrier.value != close else ""
            hint = f'did you mean "{close}"{named}?'
        else:
            hint = (
                f"for an extra gateway, name it in virtual={key!r} or in a rule "
                f"(Rule(gateway={key!r}, ...))"
            )
        raise ConfigurationError(
            f"gateway key {key!r} is not an operator (移动, 联通, 电信, 广电) and neither "
            f"virtual= nor a rule uses it: {hint}"
        )


@dataclass(frozen=True, eq=False)
class RoutingPolicy:
    """Gateways by operator (or extra key), a default, the virtual-operator policy and rules.

    ``virtual`` is ``"host"`` (a virtual-operator number goes where its host
    operator's would), ``"reject"`` (NoRoute) or a key of ``gateways`` (all
    virtual-operator numbers go there). Rules are tried in order before the
    operator's own gateway. Immutable; :meth:`copy` makes variants.

    Every key of ``gateways`` must be able to receive a number: an operator
    spelling :meth:`Carrier.parse` reads, ``"default"`` (the default gateway,
    instead of ``default=``), the key ``virtual`` names, or an extra gateway
    a rule sends to (the rule names the key, and routes to its value; or the
    rule gives the gateway itself, which is the value). Any other
    key is a :class:`ConfigurationError` with a "did you mean" hint: it is
    nearly always a misspelt operator, whose numbers would otherwise get
    NoRoute after their lookup was paid for. The check sees the final
    settings of each policy, so a router's setters re-run it: change the
    gateways and ``virtual`` together with ``router.policy =
    router.policy.copy(gateways=..., virtual=...)``.

    .. versionadded:: 0.2.0
    """

    gateways: Mapping[Carrier | str, Any]
    default: Any = None
    virtual: str = "host"
    rules: tuple[Rule, ...] = ()
    _memo: dict[int, Route] = field(default_factory=dict, init=False, repr=False)
    _extras: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        gateways = _read_gateways(self.gateways)
        if DEFAULT_KEY in gateways:
            default = gateways.pop(DEFAULT_KEY)
            if self.default is not None and not _same(self.default, default):
                raise ConfigurationError(
                    "a default gateway given twice (default= and the key 'default'): pass one"
                )
            object.__setattr__(self, "default", default)
        object.__setattr__(self, "gateways", MappingProxyType(gateways))
        # The keys that are no operator: a rule naming one routes to its gateway.
        extras = frozenset(k for k in gateways if not isinstance(k, Carrier))
        object.__setattr__(self, "_extras", extras)
        object.__setattr__(self, "rules", tuple(self.rules))
        if self.virtual not in VIRTUAL_POLICIES and self.virtual not in self.gateways:
            names = {k.lower(): k for k in self.gateways if isinstance(k, str)}
            close = difflib.get_close_matches(self.virtual.lower(), names, n=1, cutoff=0.5)
            hint = f': did you mean "{names[close[0]]}"?' if close else ""
            raise ConfigurationError(
                f"virtual: {self.virtual!r} is not 'host', 'reject' or a key of gateways{hint}"
            )
        _check_keys(self.gateways, self.virtual, self.rules)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoutingPolicy):
            return NotImplemented
        return (dict(self.gateways), self.default, self.virtual, self.rules) == (
            dict(other.gateways),
            other.default,
            other.virtual,
            other.rules,
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingPolicy:
        """Build a policy from plain data: ``gateways``, ``default``, ``virtual``, ``rules``.

        ``gateways`` maps any spelling :meth:`Carrier.parse` reads (or an extra
        key such as ``"mvno"``) to a gateway id; ``rules`` is a list of tables
        with the fields of :class:`Rule`.
        """
        unknown = sorted(set(data) - {"gateways", "default", "virtual", "rules"})
        if unknown:
            raise ConfigurationError(f"routing: unknown key {unknown[0]!r}")
        gateways = data.get("gateways")
        if not isinstance(gateways, Mapping) or not gateways:
            raise ConfigurationError("routing: gateways must be a non-empty table")
        rules = data.get("rules", ())
        if not isinstance(rules, Iterable) or isinstance(rules, (str, Mapping)):
            raise ConfigurationError("routing: rules must be a list of tables")
        virtual = data.get("virtual", "host")
        if not isinstance(virtual, str):
            raise ConfigurationError("routing: virtual must be text")
        return cls(
            gateways,
            default=data.get("default"),
            virtual=virtual,
            rules=tuple(Rule.from_dict(r) if isinstance(r, Mapping) else r for r in rules),
        )

    def copy(self, **changes: Any) -> RoutingPolicy:
        """Return a new policy with some fields changed (and an empty memo)."""
        values: dict[str, Any] = {
            "gateways": self.gateways,
            "default": self.default,
            "virtual": self.virtual,
            "rules": self.rules,
        }
        values.update(changes)
        return RoutingPolicy(**values)

    def pick(
        self, carrier: Carrier | None, province: str, ported: bool | None, virtual: bool
    ) -> Any:
        """Return the gateway for an answer with these facts; raise NoRoute when none fits."""
        if virtual and self.virtual == "reject":
            raise NoRoute(f"virtual-operator number ({carrier}) refused by virtual='reject'")
        for rule in self.rules:
            if rule.matches(carrier, province, ported, virtual):
                # A rule may name an extra key of the map ("gd" -> "GD-CT-DIRECT")
                # or give the gateway itself (an operator's name included).
                target = rule.gateway
                if isinstance(target, str) and target in self._extras:
                    return self.gateways[target]
                return target
        if virtual and self.virtual != "host":
            return self.gateways[self.virtual]
        if carrier is not None and carrier in self.gateways:
            return self.gateways[carrier]
        if self.default is not None:
            return self.default
        raise NoRoute(f"no gateway for {carrier or 'an unknown operator'} and no default")

    def route(self, answer: int) -> Route:
        """Return the route of an answer code (memoised: rules run once per distinct code)."""
        route = self._memo.get(answer)
        if route is not None:
            return route
        current, _initial, res, area = codec.fields(answer)
        try:
            gateway = self.pick(
                current, province_of(area.partition("-")[0]), res == 1, res in (3, 4)
            )
            route = Route(current, gateway, None)
        except NoRoute as exc:
            route = Route(current, None, str(exc))
        if len(self._memo) >= _MEMO_BOUND:
            self._memo.clear()
        self._memo[answer] = route
        return route

    def offline(self, segment: Segment | None) -> Route:
        """Return the route by the segment table alone (no province, no port known)."""
        carrier = segment.carrier if segment is not None else None
        virtual = segment is not None and segment.kind == "virtual"
        try:
            return Route(carrier, self.pick(carrier, "", None, virtual), None)
        except NoRoute as exc:
            return Route(carrier, None, str(exc))
