"""Tests for smsroute.tiers: the back-off rule of Health and the near tier, on a FakeClock."""

from __future__ import annotations

import pytest
from _fakes import MOBILE_NO
from test_cache_contract import PLAIN, PORTED

from smsroute import codec
from smsroute.core.freshness import CachePolicy, fresh_until
from smsroute.testing import FakeClock
from smsroute.tiers import Counts, Health, NearTier


def health(clock: FakeClock, *, failures: int = 3, backoff: float = 1.0) -> Health:
    """Return a Health on ``clock`` with its own counters."""
    return Health(backoff=backoff, failures=failures, monotonic=clock, counts=Counts())


def test_back_off_starts_at_the_nth_consecutive_failure():
    """Two failures are a busy store; the third in a row starts the back-off, reported once."""
    clock = FakeClock()
    h = health(clock)
    assert [h.failed(clock()) for _ in range(2)] == [False, False]
    assert not h.resting()
    assert h.available
    assert h.failed(clock()) is True  # the outage begins: log it
    assert h.resting()
    assert not h.available
    assert h.failed(clock()) is False  # the same outage: no second warning
    clock.advance(1.01)
    assert not h.resting()


def test_a_success_resets_the_streak():
    """Failures with successes between them never start a back-off."""
    clock = FakeClock()
    h = health(clock)
    for _ in range(10):
        h.failed(clock())
        h.failed(clock())
        assert h.succeeded() is None  # no outage was declared: nothing to log
    assert not h.resting()
    assert h.available


def test_failures_of_commands_in_flight_together_count_once():
    """Commands sent before a failure was seen were caught by the same stall: one step."""
    clock = FakeClock()
    h = health(clock)
    sent = clock()
    clock.advance(0.05)  # they all time out together
    for _ in range(8):
        assert h.failed(sent) is False
    assert not h.resting()
    assert h.failed(clock()) is False  # sent after the stall was seen: the second step
    assert h.failed(clock()) is True  # the third
    assert h.resting()


def test_after_the_back_off_one_failure_rests_again():
    """A store still sick after its back-off is left alone again at its first failure."""
    clock = FakeClock()
    h = health(clock)
    for _ in range(3):
        h.failed(clock())
    clock.advance(1.01)
    assert not h.resting()
    assert h.failed(clock()) is False  # still the same outage
    assert h.resting()


def test_recovery_reports_the_errors_once():
    """The success that ends an outage returns the error count; later ones return None."""
    clock = FakeClock()
    counts = Counts()
    h = Health(
        backoff=0.0, failures=1, monotonic=clock, counts=counts, counters=("errors", "refused")
    )
    assert h.failed(clock()) is True
    assert h.failed(clock()) is False
    assert not h.resting()  # backoff 0: never rests
    assert h.succeeded() == 2
    assert h.succeeded() is None
    assert counts.snapshot(("errors", "refused", "other")) == {
        "errors": 2,
        "refused": 2,
        "other": 0,
    }


@pytest.mark.parametrize(("backoff", "failures"), [(-1.0, 3), (1.0, 0)])
def test_bad_settings_are_refused(backoff, failures):
    """A negative back-off or a threshold below one is a ValueError."""
    with pytest.raises(ValueError, match="backoff"):
        health(FakeClock(), failures=failures, backoff=backoff)


def near(clock: FakeClock, ttl: float = 60.0) -> NearTier:
    """Return a near tier on ``clock`` in front of a 100 s / 10 s / 1000 s policy."""
    policy = CachePolicy(ttl=100.0, negative_ttl=10.0, stale_ttl=1000.0)
    return NearTier(policy, maxsize=100, ttl=ttl, monotonic=clock)


def test_a_stored_answer_is_kept_for_near_ttl():
    """An answer the store took is fresh here for near_ttl, then the store is asked again."""
    clock = FakeClock()
    tier = near(clock)
    tier.stored(MOBILE_NO, PORTED)
    clock.advance(59)
    assert tier.fresh(MOBILE_NO) == (PORTED, True)
    clock.advance(2)
    assert tier.fresh(MOBILE_NO) is None


def test_a_held_answer_is_kept_for_its_whole_ttl():
    """An answer the store refused is fresh here for the policy's TTL, even with near_ttl=0."""
    clock = FakeClock()
    tier = near(clock, ttl=0.0)
    until = fresh_until(clock(), 100.0)
    tier.hold(MOBILE_NO, PORTED)
    clock.advance(until - clock() - 0.001)
    assert tier.fresh(MOBILE_NO) == (PORTED, True)
    tier.stored(MOBILE_NO, PLAIN)  # near_ttl=0: a stored answer is not copied here
    assert tier.fresh(MOBILE_NO) == (PORTED, True)


def test_the_outage_answer_is_the_near_entry_as_fresh():
    """While the store cannot be asked, a near entry past near_ttl is served as fresh."""
    clock = FakeClock()
    tier = near(clock)
    tier.stored(MOBILE_NO, PORTED)
    tier.stored("13900000002", codec.NOT_FOUND)
    clock.advance(90)
    assert tier.fresh(MOBILE_NO) is None
    assert tier.outage_answer(MOBILE_NO) == (PORTED, True)
    assert tier.outage_answer("13900000002") is None  # a negative has no stale window
    assert tier.outage_answer("13900000003") is None


def test_learn_keeps_only_what_stays_fresh_longer_than_near_ttl():
    """A store entry with less freshness left than near_ttl is answered but not copied."""
    clock = FakeClock()
    tier = near(clock)
    now = clock()
    assert tier.learn(MOBILE_NO, int(now) + 60, PORTED, now) == (PORTED, True)
    assert tier.fresh(MOBILE_NO) is None
    assert tier.learn(MOBILE_NO, int(now) + 61, PORTED, now) == (PORTED, True)
    assert tier.fresh(MOBILE_NO) == (PORTED, True)
    assert tier.learn(MOBILE_NO, int(now) - 1, PORTED, now) == (PORTED, False)


def test_near_ttl_must_not_be_negative():
    """A negative near_ttl is refused."""
    with pytest.raises(ValueError, match="near_ttl"):
        near(FakeClock(), ttl=-1.0)
