"""The decision core: what smsroute decides, with no I/O.

Nothing in this package waits or talks: no threads, no event loop, no
clock, no sockets, no logging. Time comes in as an argument (``now``) and
results go out as values, so the synchronous :class:`~smsroute.Router`, the
asyncio router and the HTTP service drive the same decisions and only differ
in how they wait. ``tests/test_core_boundary.py`` guards the import rule.

* :mod:`.freshness` - the TTL policy and the fresh/stale/negative/miss verdict.
* :mod:`.policy`    - RoutingPolicy and Rule: answer -> gateway, offline choice.
* :mod:`.outcome`   - judging a lookup's error: breaker, negatives, stale, reason.
* :mod:`.resolve`   - the miss path as a generator of steps for a driver to perform.
* :mod:`.breaker`   - circuit-breaker transitions with an explicit ``now``.
* :mod:`.vendor`    - the vendor wire protocol: form, parsing, codes, redaction.
* :mod:`.stats`     - counters, latency histogram, the typed stats shape.
"""
