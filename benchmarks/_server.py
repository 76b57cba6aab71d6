"""Run a FakeCarrierServer in its own process, controlled over stdin/stdout.

benchmarks/run.py starts this script so that the fake vendor does not share
the benchmark's GIL: with the server in the same process, every request the
client sends also costs the client's interpreter the server's parsing,
hashing and rendering. One JSON object per line in, one per line out::

    {"latency": 0.01}    {"fault": "hang"}    {"fault": null}    {}
    -> {"paid": 12, "carrier_calls": 12, "fault": null, "latency": 0.01, "cpu": 1.5}

``cpu`` is the server process's CPU seconds so far. The first line written
is ``{"url": ..., "apikey": ...}``. End of input stops the server.
"""

from __future__ import annotations

import json
import sys
import time

from smsroute.testing import FakeCarrierServer


def main() -> int:
    """Serve until stdin closes, answering one control line at a time."""
    # A balance no benchmark can spend: figure 3 alone sends 100,000+ queries.
    with FakeCarrierServer(balance=10**12) as server:
        print(json.dumps({"url": server.url, "apikey": server.apikey}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if "latency" in command:
                server.latency = float(command["latency"])
            if "fault" in command:
                server.fault = command["fault"]
            reply = {
                "paid": server.paid,
                "carrier_calls": server.carrier_calls,
                "fault": server.fault,
                "latency": server.latency,
                "cpu": time.process_time(),
            }
            print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
