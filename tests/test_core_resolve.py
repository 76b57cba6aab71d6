"""Property tests of the miss plan (smsroute.core.resolve), driven without threads or I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.core import resolve
from smsroute.errors import (
    BalanceExhausted,
    CircuitOpen,
    InvalidNumber,
    NumberNotFound,
    ServiceError,
    TransportError,
)
from smsroute.models import CarrierInfo

MOBILE = "13972565391"
ANSWER = codec.encode(CarrierInfo(MOBILE, 1, "湖北-宜昌", Carrier.MOBILE, Carrier.TELECOM))
FRESH = (ANSWER, True)
STALE = (ANSWER, False)
NEGATIVE = (codec.NOT_FOUND, True)


class Cancelled(BaseException):
    """Stands for asyncio.CancelledError or KeyboardInterrupt: not an Exception."""


ASK_RESULTS = st.sampled_from(
    [
        "answer",
        "none",
        NumberNotFound(-4, "not found"),
        ServiceError(-8, "busy"),
        BalanceExhausted(-5, "empty"),
        TransportError("timed out"),
        CircuitOpen("inner breaker"),
        InvalidNumber("refused by the client"),
        RuntimeError("a bug in the client"),
        Cancelled(),
    ]
)
HITS = st.sampled_from([None, FRESH, STALE, NEGATIVE])


class Script:
    """Answers a plan's steps from drawn values and records what the plan asked for."""

    def __init__(self, data: st.DataObject, start: float, end: float) -> None:
        self.data = data
        self.now = start
        self.end = end
        self.steps: list[resolve.Step] = []
        self.claims_held = 0
        self.asks = 0
        self.probe_taken = False
        self.probe_settled = 0

    def answer(self, step: resolve.Step) -> object:
        """Return what a driver would send back for ``step`` (or raise what it would throw)."""
        self.steps.append(step)
        # Time passes by a drawn amount at every step, sometimes past the end.
        self.now += self.data.draw(st.floats(0, 0.3), label="elapsed")
        if isinstance(step, resolve.Follow):
            assert step.timeout >= 0
            return self.data.draw(
                st.sampled_from(
                    [None, resolve.Answered(ANSWER, "upstream"), resolve.Failed(None, "x")]
                )
            )
        if isinstance(step, resolve.Read | resolve.WaitFleet):
            return self.data.draw(HITS)
        if isinstance(step, resolve.Claim):
            won = self.data.draw(st.booleans(), label="claim won")
            self.claims_held += won
            return won
        if isinstance(step, resolve.Release):
            self.claims_held -= 1
            return None
        if isinstance(step, resolve.Allow):
            allowed = self.data.draw(st.booleans(), label="breaker allows")
            self.probe_taken = allowed
            return allowed
        if isinstance(step, resolve.Ask):
            self.asks += 1
            got = self.data.draw(ASK_RESULTS, label="ask")
            if got == "answer":
                return CarrierInfo(MOBILE, 1, "湖北-宜昌", Carrier.MOBILE, Carrier.TELECOM)
            if got == "none":
                return None
            raise got  # type: ignore[misc]
        if isinstance(step, resolve.Success | resolve.Failure | resolve.GiveBack):
            self.probe_settled += 1
        return None


def run(data: st.DataObject, *, shared: bool, leader: bool) -> tuple[Script, object]:
    """Drive one plan to its end; return the script and the outcome (or the escaped exception)."""
    start = 1000.0
    budget = data.draw(st.floats(0.001, 1.0), label="budget")
    script = Script(data, start, start + budget)
    plan = resolve.plan(now=start, end=start + budget, shared=shared)
    step = next(plan)
    assert isinstance(step, resolve.Join)
    sent: object = (leader, script.now)
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(sent) if error is None else plan.throw(error)
        except StopIteration as stop:
            return script, stop.value
        except Cancelled as exc:
            return script, exc
        error = None
        # The plan never asks to wait past its end.
        if isinstance(step, resolve.Follow | resolve.WaitFleet | resolve.Ask):
            assert step.timeout <= max(0.0, script.end - script.now) + 1e-9
        try:
            sent = (script.answer(step), script.now)
        except BaseException as exc:
            error = exc


@settings(max_examples=400, deadline=None)
@given(data=st.data(), shared=st.booleans(), leader=st.booleans())
def test_plan_invariants(data, shared, leader):
    """Whatever the outcomes: one vendor call at most, every claim released, every probe settled."""
    script, outcome = run(data, shared=shared, leader=leader)
    assert script.asks <= 1
    assert script.claims_held == 0
    if script.probe_taken:
        assert script.probe_settled == 1
    if not leader:
        assert [type(s) for s in script.steps] == [resolve.Follow]
    if isinstance(outcome, resolve.Answered):
        assert outcome.answer == ANSWER
    else:
        assert isinstance(outcome, resolve.Failed | Cancelled)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_negative_answer_is_stored_and_never_routed(data):
    """A -4 is stored as NOT_FOUND and fails the plan (the segment table then decides)."""
    script, outcome = run(data, shared=False, leader=True)
    stores = [s for s in script.steps if isinstance(s, resolve.Store)]
    if isinstance(outcome, resolve.Failed) and isinstance(outcome.error, NumberNotFound):
        assert stores in ([], [resolve.Store(codec.NOT_FOUND)])
    for store in stores:
        assert store.answer in (ANSWER, codec.NOT_FOUND)


def drive(plan, answers):
    """Run a plan against a fixed list of answers (values or exceptions); return steps, outcome."""
    steps = [next(plan)]
    sent, error = (answers.pop(0), 0.0), None
    while True:
        try:
            step = plan.send(sent) if error is None else plan.throw(error)
        except StopIteration as stop:
            return steps, stop.value
        steps.append(step)
        value = answers.pop(0) if answers else None
        sent, error = (
            ((None, 0.0), value) if isinstance(value, BaseException) else ((value, 0.0), None)
        )


def test_cancelled_leader_gives_back_the_probe_and_the_claim():
    """A leader cancelled while asking gives back the half-open probe and releases its claim."""
    plan = resolve.plan(now=0.0, end=0.5, shared=True)
    with pytest.raises(Cancelled):
        drive(plan, [True, True, True, Cancelled(), None, None])
    plan = resolve.plan(now=0.0, end=0.5, shared=True)
    steps = [next(plan)]
    for value in (True, True, True):
        steps.append(plan.send((value, 0.0)))
    assert isinstance(steps[-1], resolve.Ask)
    assert isinstance(plan.throw(Cancelled()), resolve.GiveBack)
    assert isinstance(plan.send((None, 0.0)), resolve.Release)
    with pytest.raises(Cancelled):
        plan.send((None, 0.0))


def test_ask_gets_the_deadline_less_headroom():
    """The vendor gets what is left of the deadline, less 10% (at most HEADROOM)."""
    plan = resolve.plan(now=0.0, end=0.5, shared=False)
    next(plan)
    assert isinstance(plan.send((True, 0.0)), resolve.Read)
    assert isinstance(plan.send((None, 0.1)), resolve.Allow)
    ask = plan.send((True, 0.1))
    assert ask == resolve.Ask(pytest.approx(0.4 - resolve.HEADROOM))


def test_settle_serves_stale_unless_the_vendor_said_not_found():
    """A failed flight serves the caller's stale answer, except after a -4 (segment table then)."""
    error = TransportError("x")
    failed = resolve.Failed(error, "TransportError: x")
    assert resolve.settle(failed, STALE) == resolve.Fallback(ANSWER, "TransportError: x", error)
    gone = resolve.Failed(NumberNotFound(-4, "nf"), "NumberNotFound -4: nf")
    assert resolve.settle(gone, STALE).stale is None
    assert resolve.settle(failed, NEGATIVE).stale is None


def test_shortcut_only_without_a_fleet():
    """An open breaker skips the lookup, unless another worker of the fleet may bring the answer."""
    short = resolve.shortcut(STALE, shared=False, rejecting=True)
    assert (short.stale, short.reason, type(short.error)) == (ANSWER, "circuit open", CircuitOpen)
    assert resolve.shortcut(STALE, shared=True, rejecting=True) is None
    assert resolve.shortcut(None, shared=False, rejecting=False) is None
