"""Shared fixtures: keep this file small; module-specific helpers live in their test file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tenacity import Retrying

import smsroute
import smsroute.segments


@pytest.fixture
def fast_retry() -> Retrying:
    """Return the default policy with three attempts and no real sleeping."""
    return smsroute.default_retrying(attempts=3, sleep=lambda _seconds: None)


@pytest.fixture
def restore_segments() -> Iterator[None]:
    """Restore the built-in segment table after a test that installs another."""
    try:
        yield
    finally:
        smsroute.segments.install(None)
