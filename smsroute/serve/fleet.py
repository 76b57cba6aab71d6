"""``/metrics`` across ``--workers N``: every worker's figures on one scrape, labelled ``worker``.

A scrape reaches one worker (the kernel spreads connections over the port),
and each worker counts only what it served itself: scraped as it is, the
service's counters would jump between the workers' values. So each worker
writes its exposition to a directory the supervisor made
(``worker-N.prom``, atomically: written beside, then renamed), every
:data:`SNAPSHOT_SECONDS` and on each scrape it answers; the worker that
answers reads its siblings' files and joins the families by name, every
sample with a ``worker`` label (``"1"`` to ``"N"``). A sibling's figures are
at most :data:`SNAPSHOT_SECONDS` old; ``smsroute_worker_snapshot_age_seconds``
says how old each is. Sum over the fleet with ``sum without (worker) (...)``.

This is prometheus_client's multiprocess mode in spirit (its own mode only
covers its own metric types, and the router's collector builds families
from ``stats()`` at scrape time). Needs prometheus-client.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["SNAPSHOT_SECONDS", "exposition", "snapshot_path", "write_snapshot"]

SNAPSHOT_SECONDS: Final = 5.0
_PREFIX: Final = "worker-"
_SUFFIX: Final = ".prom"


def snapshot_path(directory: str | os.PathLike[str], worker: int) -> Path:
    """Return where worker ``worker`` (0-based) keeps its exposition."""
    return Path(directory) / f"{_PREFIX}{worker + 1}{_SUFFIX}"


def write_snapshot(registry: CollectorRegistry, directory: str, worker: int) -> bytes:
    """Write this worker's exposition to its file (atomically) and return it; OSError if not."""
    body = generate_latest(registry)
    path = snapshot_path(directory, worker)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        partial.write_bytes(body)
        os.replace(partial, path)  # a scrape never reads half a file
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return body


def exposition(registry: CollectorRegistry, directory: str, worker: int) -> bytes:
    """Return the fleet's exposition: this worker's live figures and its siblings' last ones.

    A snapshot that cannot be written (a full disk) costs the siblings'
    view of this worker, never the scrape: the file already there is used.
    """
    with contextlib.suppress(OSError):
        write_snapshot(registry, directory, worker)
    snapshots: list[tuple[str, float, str]] = []
    now = time.time()
    for path in sorted(Path(directory).glob(f"{_PREFIX}*{_SUFFIX}")):
        label = path.name[len(_PREFIX) : -len(_SUFFIX)]
        try:
            text = path.read_text(encoding="utf-8")
            age = max(0.0, now - path.stat().st_mtime)
        except OSError:
            continue  # a worker being restarted: its next snapshot brings it back
        snapshots.append((label, age, text))
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_Merged(snapshots))
    return generate_latest(merged)


class _Merged:
    """A collector of the workers' snapshots, joined by family, each sample labelled."""

    def __init__(self, snapshots: list[tuple[str, float, str]]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        """Yield every family of every snapshot, then the snapshots' ages."""
        families: dict[str, Metric] = {}
        for label, _age, text in self.snapshots:
            for family in text_string_to_metric_families(text):
                joined = families.get(family.name)
                if joined is None:
                    joined = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = dict(sample.labels)
                    if "worker" in labels:  # a label of its own: kept, as Prometheus does
                        labels["exported_worker"] = labels.pop("worker")
                    labels["worker"] = label
                    joined.samples.append(sample._replace(labels=labels))
        yield from families.values()
        ages = GaugeMetricFamily(
            "smsroute_worker_snapshot_age_seconds",
            "How old each worker's figures in this scrape are (0 for the worker that answered).",
            labels=["worker"],
        )
        for label, age, _text in self.snapshots:
            ages.add_metric([label], round(age, 3))
        yield ages
