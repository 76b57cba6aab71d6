"""Tests for serve.fleet: one scrape answers for every worker, whatever befalls the files."""

from __future__ import annotations

import os

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.core import CounterMetricFamily  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from smsroute.serve import fleet  # noqa: E402


def registry(count: float, labels: dict[str, str] | None = None) -> CollectorRegistry:
    """Return a registry with one counter family, ``served``."""

    class One:
        def collect(self):
            family = CounterMetricFamily("served", "Requests.", labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), count)
            yield family

    r = CollectorRegistry(auto_describe=False)
    r.register(One())
    return r


def samples(body: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Return the samples of one family by their sorted labels."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_worker_shows_once_with_its_label(tmp_path):
    """Worker 2's last snapshot and worker 1's live figures, each labelled, in one scrape."""
    fleet.write_snapshot(registry(7), str(tmp_path), 1)
    body = fleet.exposition(registry(3), str(tmp_path), 0)
    assert samples(body, "served_total") == {(("worker", "1"),): 3.0, (("worker", "2"),): 7.0}
    ages = samples(body, "smsroute_worker_snapshot_age_seconds")
    assert set(ages) == {(("worker", "1"),), (("worker", "2"),)}


def test_a_metric_with_its_own_worker_label_keeps_it(tmp_path):
    """A family's own ``worker`` label is kept as ``exported_worker``, never overwritten."""
    body = fleet.exposition(registry(1, {"worker": "inner"}), str(tmp_path), 0)
    assert samples(body, "served_total") == {(("exported_worker", "inner"), ("worker", "1")): 1.0}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only directory anyway")
def test_a_snapshot_that_cannot_be_written_still_answers(tmp_path):
    """A directory that refuses writes costs the siblings' view, not the scrape."""
    fleet.write_snapshot(registry(5), str(tmp_path), 0)
    tmp_path.chmod(0o500)
    try:
        body = fleet.exposition(registry(9), str(tmp_path), 0)
    finally:
        tmp_path.chmod(0o700)
    assert samples(body, "served_total") == {(("worker", "1"),): 5.0}  # the last one written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """The half-written file beside the snapshot is removed when the rename fails."""

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fleet.os, "replace", refuse)
    with pytest.raises(OSError):
        fleet.write_snapshot(registry(1), str(tmp_path), 0)
    body = fleet.exposition(registry(2), str(tmp_path), 0)  # the scrape still answers
    assert samples(body, "served_total") == {}
    assert list(tmp_path.iterdir()) == []
