"""Reading one table of a settings file: typed values, messages that name the key, no strays.

Every read names its table and key in the error it raises
(``[routing] deadline: must be a positive number``), and :meth:`Table.done`
refuses the keys no read asked for, with the nearest known key as a hint.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeVar

from smsroute.errors import ConfigurationError

__all__ = ["Table", "check_tables", "hint"]

_D = TypeVar("_D")


def hint(word: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the nearest known word, or the list of them."""
    names = sorted(known)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(names)})" if names else ""


def check_tables(data: Mapping[str, Any], tables: tuple[str, ...]) -> None:
    """Refuse a top-level name that is not one of ``tables`` (or not a table)."""
    for name, value in data.items():
        if name not in tables:
            close = difflib.get_close_matches(name, tables, n=1, cutoff=0.6)
            tip = f" (did you mean [{close[0]}]?)" if close else f" (tables: {', '.join(tables)})"
            raise ConfigurationError(f"[{name}]: unknown table{tip}")
        if name != "rules" and not isinstance(value, Mapping):
            raise ConfigurationError(f"{name}: must be a table, [{name}]")


class Table:
    """One table of the file: typed reads that name the key; :meth:`done` refuses the rest."""

    def __init__(self, name: str, data: object, *, index: int | None = None) -> None:
        # An array of tables names its entry by position: "[[rules]] #2 carrier: ...".
        self.label = f"[{name}]" if index is None else f"[[{name}]] #{index}"
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{self.label}: must be a table")
        self.data: Mapping[str, Any] = data
        self.seen: set[str] = set()

    def fail(self, key: str, what: str) -> NoReturn:
        """Raise the ConfigurationError for ``key``."""
        raise ConfigurationError(f"{self.label} {key}: {what}")

    def get(self, key: str) -> Any:
        """Return the raw value (None when absent) and mark the key known."""
        self.seen.add(key)
        return self.data.get(key)

    def text(
        self, key: str, default: _D, *, choices: tuple[str, ...] = (), secret: bool = False
    ) -> str | _D:
        """Return a text value, or ``default`` when absent."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            # A secret's value is never echoed, even a mistyped one.
            self.fail(key, "must be text" if secret else f"must be text, not {value!r}")
        if choices and value not in choices:
            self.fail(key, f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return value

    def need_text(self, key: str, *, secret: bool = False) -> str:
        """Return a text value that must be there."""
        value = self.text(key, None, secret=secret)
        if value is None:
            self.fail(key, "is missing")
        return value

    def number(
        self, key: str, default: _D, *, positive: bool = False, minimum: float | None = None
    ) -> float | _D:
        """Return a finite number, or ``default`` when absent."""
        value = self.get(key)
        if value is None:
            return default
        what = "must be a positive number" if positive else "must be a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, what)
        if not math.isfinite(value) or (positive and value <= 0):
            self.fail(key, what)
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}")
        return float(value)

    def integer(
        self, key: str, default: _D, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | _D:
        """Return a whole number within bounds, or ``default`` when absent."""
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "must be a whole number")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum}")
        return value

    def flag(self, key: str, default: _D) -> bool | _D:
        """Return true or false, or ``default`` when absent."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
        return value

    def timeout(self, key: str) -> float | tuple[float, float] | None:
        """Return seconds, or ``[connect, read]`` seconds, or None when absent."""
        value = self.get(key)
        if isinstance(value, list):
            ok = len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf
                for v in value
            )
            if not ok:
                self.fail(key, "must be seconds, or [connect, read] seconds")
            return (float(value[0]), float(value[1]))
        return self.number(key, None, positive=True)

    def done(self) -> None:
        """Refuse any key no read asked for, with the nearest known key as a hint."""
        for key in self.data:
            if key not in self.seen:
                self.fail(key, "unknown key" + hint(key, self.seen))
