"""``smsroute serve``: the HTTP routing service, for platforms that are not Python.

PHP, Java and Go platforms ask it where a send goes (``GET /v1/route``,
``POST /v1/route/batch``), or point code written against the vendor at it
(drop-in ``/carrier`` and ``/balance``); it answers from one
:class:`~smsroute.AsyncRouter` with its cache, breaker and fallbacks, so
the vendor is paid once per number and a vendor outage never fails a send.
Needs the extra ``smsroute[async]`` (aiohttp). See ``docs/serve.md``.

::

    from smsroute.serve import main
    main(["--config", "smsroute.toml"])          # what `smsroute serve` runs

=============  =====================================================================
``runner``     :func:`main`: options, safety checks, workers, signals, drain
``app``        :func:`create_app`: the aiohttp application and its routes
``service``    :class:`Service`: one worker's router, clients, callers, counters
``api``        ``/v1/route`` and ``/v1/route/batch``
``compat``     drop-in ``/carrier`` and ``/balance`` in the vendor's shape and codes
``ops``        ``/healthz``, ``/readyz``, ``/metrics``
``prom``       the Prometheus collector of the service (needs prometheus-client)
``status``     the HTML status page at ``/``
``callers``    client keys, per-caller qps and daily quota, the metered vendor client
``decisions``  a Decision under the configured gateways, and its JSON
``balance``    the vendor balance, cached and polled
``observe``    the middleware: HTTP counts and latency, access log, JSON errors
``replies``    JSON replies and reading requests within their limits
=============  =====================================================================

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsroute.serve.runner import main

if TYPE_CHECKING:
    from smsroute.serve.app import create_app
    from smsroute.serve.service import Service

__all__ = ["Service", "create_app", "main"]


def __getattr__(name: str) -> Any:
    """Return create_app or Service, importing aiohttp on first use."""
    # `from smsroute.serve import main` must work without aiohttp, so that
    # main() can say in one line that it is missing.
    if name == "create_app":
        from smsroute.serve.app import create_app

        return create_app
    if name == "Service":
        from smsroute.serve.service import Service

        return Service
    raise AttributeError(f"module 'smsroute.serve' has no attribute {name!r}")
