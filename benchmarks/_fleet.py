"""One process of figure 12's fleet: a Router on RedisCache(cluster=True), run over stdin/stdout.

figures/fig12_cluster.py starts several of these, each its own OS process,
Router, CarrierClient and RedisCache on one Redis Cluster, all against one
fake vendor. One JSON object per line::

    in:  {"redis": URL, "vendor": URL, "apikey": ..., "threads": 8, "numbers": [...]}
    out: {"ready": true}                       (imported, and the cluster's slot map read)
    in:  {"go": true}
    out: {"sends": ..., "failed": ..., "decisions": ..., "cache": ...}

It sends to every number once on ``threads`` threads (Router.send), reports
the router's and the cache's counters, and exits at the end of its input.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from harness import Deliveries, gateways

import smsroute


def main() -> int:
    """Read the job, say ready, send on ``go``, say what happened, exit at end of input."""
    job = json.loads(sys.stdin.readline())
    threads = int(job["threads"])
    client = smsroute.CarrierClient(job["apikey"], base_url=job["vendor"], pool_maxsize=threads)
    cache = smsroute.RedisCache(job["redis"], cluster=True, prefix="bench12-fleet:")
    deliveries = Deliveries()
    router = smsroute.Router(client, gateways(deliveries), default=deliveries, cache=cache)
    numbers: list[str] = job["numbers"]
    work = iter(numbers)
    failed: list[str] = []

    def sender() -> None:
        for n in work:
            try:
                router.send(n, "hello")
            except Exception as exc:  # the figure counts failed sends
                failed.append(type(exc).__name__)

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # go
    started = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - started
    stats = router.stats()
    report = {
        "sends": len(numbers),
        "failed": len(numbers) - deliveries.count,  # a send that raised delivered nothing
        "errors": sorted(set(failed)),
        "seconds": elapsed,
        "upstream_calls": stats["upstream_calls"],
        "coalesced": stats["coalesced"],
        "decisions": stats["decisions"],
        "fallback_reasons": stats["fallback_reasons"],
        "router_errors": stats["errors"],
        "cache": cache.stats(),
    }
    print(json.dumps(report), flush=True)
    router.close()
    client.close()
    cache.close()
    sys.stdin.read()  # until the parent closes our input (harness.stop_child)
    return 0


if __name__ == "__main__":
    sys.exit(main())
