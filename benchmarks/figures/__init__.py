"""The figures, one module each, registered by number in FIGURES.

A figure module says in its docstring what it measures and why, and has:

``FULL``, ``QUICK``
    Frozen dataclasses of its sizes: the issue's numbers, and a few seconds'
    worth for CI (``--quick``). Field names start with the figure's tag
    (``f1_``, ``f2_`` ...): run.py writes all figures' sizes as one flat
    ``sizes`` object in the JSON and refuses a name used twice.
``measure(env, sizes)``
    Runs the figure with ``harness.Env`` and one of the two sizes, and
    returns ``harness.figure(...)``.
``add_arguments(parser)``, optional
    Adds command-line options of its own to run.py's ``argparse`` parser;
    ``measure`` finds their values in ``env.options``.

Adding a figure is writing its module and adding its line to FIGURES. The
modules are imported by run.py, not here, so that ``python -m
figures.<module>`` can run one as a script (figure 7 does, for its RSS probe).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from harness import Env

__all__ = ["FIGURES", "Figure", "load"]

FIGURES: dict[int, str] = {
    1: "fig1_hit_path",
    2: "fig2_lookup_cost",
    3: "fig3_throughput",
    4: "fig4_single_flight",
    5: "fig5_zipf_traffic",
    6: "fig6_outage",
    7: "fig7_memory",
    8: "fig8_async_hit",
    9: "fig9_async_throughput",
    10: "fig10_async_single_flight",
    11: "fig11_slow_vendor",
    12: "fig12_cluster",
    13: "fig13_cli_route",
}


class Figure(Protocol):
    """What run.py uses of a figure module (``add_arguments`` is optional, so not here)."""

    FULL: Any
    QUICK: Any

    def measure(self, env: Env, sizes: Any) -> dict[str, Any]:
        """Run the figure and return its measures and context."""
        ...


def load(number: int) -> Figure:
    """Import and return the module of figure ``number``."""
    return cast(Figure, importlib.import_module(f"{__name__}.{FIGURES[number]}"))
