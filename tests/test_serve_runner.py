"""Tests for running smsroute serve: refusals (exit 2, one line), a real process, drain, workers."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from smsroute.serve import main
from smsroute.testing import DOC_NUMBER

ROOT = Path(__file__).resolve().parent.parent
KEY = "client-key-runner-00001"


def write(tmp_path: Path, text: str) -> Path:
    """Write a private settings file."""
    path = tmp_path / "smsroute.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def vendor_toml(vendor, extra: str = "", serve: str = "") -> str:
    """Return settings against the fake vendor on a free port."""
    return (
        f'[vendor]\napikey = "{vendor.apikey}"\nbase_url = "{vendor.url}"\n'
        f"[serve]\nport = 0\nbalance_interval = 0\ndrain_seconds = 5\n{serve}\n{extra}"
    )


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        ([], "[routing]\ndeadline = -1\n", "smsroute.toml: [routing] deadline: must be a positive"),
        (
            [],
            "[routing]\ndedline = 1\n",
            "[routing] dedline: unknown key (did you mean 'deadline'?)",
        ),
        ([], "[routing\n", "smsroute.toml: not valid TOML"),
        ([], '[vendor]\napikey_env = "NO_SUCH_VAR_X"\n', "[vendor] apikey_env: $NO_SUCH_VAR_X"),
        (["--host", "0.0.0.0"], "", "refusing to listen on 0.0.0.0 without client keys"),
        (["--port", "70000"], "", "--port: must be 0 to 65535"),
        (["--workers", "0"], "", "--workers: must be 1 to 256"),
        (["--bogus"], "", "unrecognized arguments: --bogus"),
    ],
)
def test_refusals_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, text, message):
    """A bad file, an unsafe address or a bad option: exit 2 and one line naming the problem."""
    monkeypatch.setenv("SMSROUTE_APIKEY", "vendor-key-0123456789")
    path = write(tmp_path, text)
    assert main(["--config", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("smsroute serve: ")
    assert message in err
    assert "Traceback" not in err


def test_event_loop_uvloop_needs_uvloop(tmp_path, capsys, monkeypatch):
    """[serve] event_loop = "uvloop" without uvloop installed: exit 2, one line with the hint."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setenv("SMSROUTE_APIKEY", "vendor-key-0123456789")
    path = write(tmp_path, '[serve]\nevent_loop = "uvloop"\n')
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "[serve] event_loop: uvloop is not installed: pip install 'smsroute[serve]'" in err


def test_run_loop_falls_back_to_asyncio_without_uvloop(monkeypatch):
    """event_loop = "auto" runs on asyncio's loop when uvloop is not there."""
    import asyncio

    from smsroute.serve.runner import run_loop

    monkeypatch.setitem(sys.modules, "uvloop", None)

    async def which():
        return type(asyncio.get_running_loop()).__module__.startswith("asyncio")

    assert run_loop(which(), "auto") is True
    assert run_loop(which(), "asyncio") is True


def test_a_missing_file_is_one_line(tmp_path, capsys):
    """--config of a file that is not there: exit 2, one line."""
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err == f"smsroute serve: {tmp_path / 'nope.toml'}: no such file\n"


def test_no_apikey_anywhere_is_one_line(capsys, monkeypatch):
    """Without --config and without $SMSROUTE_APIKEY: exit 2, one line."""
    monkeypatch.delenv("SMSROUTE_APIKEY", raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "smsroute serve: [vendor] apikey_env: $SMSROUTE_APIKEY is not set\n"
    )


def test_a_non_loopback_address_with_keys_passes_the_check():
    """With a client key, a non-loopback address is allowed (the check does not refuse)."""
    from smsroute.config import Settings
    from smsroute.serve.runner import check_exposure

    check_exposure(Settings.from_dict({"serve": {"host": "0.0.0.0", "client_keys": [KEY]}}))


class Process:
    """smsroute serve in a child process; stderr lines are collected as they come."""

    def __init__(self, path: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code = "import sys; from smsroute.serve import main; sys.exit(main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--config", str(path), *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Return the first stderr line matching ``pattern`` (fail after ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; saw {self.seen!r}")

    def url(self) -> str:
        """Wait for the listening line; return the base URL."""
        return self.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)

    def stop(self) -> None:
        """Kill the child if a test left it running; close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def spawn():
    """Start smsroute serve processes; kill any a test leaves behind."""
    started: list[Process] = []

    def start(path: Path, *args: str) -> Process:
        p = Process(path, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET a URL on a new connection; return status and body (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_the_request_in_flight_then_exits_0(
    tmp_path, spawn, fake_carrier_server, sig
):
    """SIGTERM (or SIGINT) while a lookup is in flight: it is answered 200, then exit 0."""
    fake_carrier_server.latency = 1.0
    path = write(tmp_path, vendor_toml(fake_carrier_server, "[routing]\ndeadline = 3\n"))
    p = spawn(path)
    url = p.url()
    result: dict[str, object] = {}

    def ask() -> None:
        result["answer"] = get(f"{url}/v1/route?mobile={DOC_NUMBER}")

    asker = threading.Thread(target=ask)
    asker.start()
    while fake_carrier_server.carrier_calls == 0:  # the lookup is at the vendor now
        time.sleep(0.01)
    p.proc.send_signal(sig)
    p.wait_for("draining|serve.draining")
    asker.join(10)
    status, body = result["answer"]
    assert status == 200
    assert json.loads(body)["source"] == "upstream"
    assert p.proc.wait(10) == 0
    p.wait_for("stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()


def test_header_limits_on_the_real_server(tmp_path, spawn, fake_carrier_server):
    """A header over max_header is refused before any handler runs."""
    path = write(tmp_path, vendor_toml(fake_carrier_server, serve="max_header = 1024"))
    p = spawn(path, "--log-level", "warning")
    url = p.url()
    request = urllib.request.Request(f"{url}/healthz", headers={"X-Big": "a" * 2000})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status in (400, 431)
    assert get(f"{url}/healthz")[0] == 200
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0


def test_a_taken_port_is_exit_1_with_one_line(tmp_path, spawn, fake_carrier_server):
    """Another process on the port: exit 1 and one line."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        path = write(tmp_path, vendor_toml(fake_carrier_server))
        p = spawn(path, "--port", str(port))
        assert p.proc.wait(20) == 1
        p.wait_for(f"cannot listen on 127.0.0.1:{port}")
    finally:
        taken.close()


def test_workers_share_one_port_and_drain_together(tmp_path, spawn, fake_carrier_server):
    """--workers 2: both serve on one port (SO_REUSEPORT); SIGTERM stops both, exit 0."""
    path = write(tmp_path, vendor_toml(fake_carrier_server))
    p = spawn(path, "--workers", "2", "--log-level", "warning")
    url = p.url()
    pids = set()
    for _ in range(40):  # new connections: the kernel spreads them over the workers
        status, page = get(f"{url}/")
        assert status == 200
        pids.add(re.search(rb"worker (\d) of 2, pid (\d+)", page).group(2))
        if len(pids) == 2:
            break
    assert len(pids) == 2
    status, body = get(f"{url}/v1/route?mobile={DOC_NUMBER}")
    assert (status, json.loads(body)["carrier"]) == (200, "电信")
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_a_worker_that_dies_is_restarted(tmp_path, spawn, fake_carrier_server):
    """The supervisor restarts a worker killed from outside."""
    path = write(tmp_path, vendor_toml(fake_carrier_server))
    p = spawn(path, "--workers", "2", "--log-level", "warning")
    url = p.url()
    _status, page = get(f"{url}/")
    pid = int(re.search(rb"pid (\d+)", page).group(1))
    os.kill(pid, signal.SIGKILL)
    p.wait_for(r"worker \d exited with status -9; restarting it")
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if get(f"{url}/healthz", timeout=2)[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0


def test_a_trickling_request_head_is_cut_off_at_idle_timeout(tmp_path, spawn, fake_carrier_server):
    """A client that sends half a request head and waits is disconnected after idle_timeout."""
    path = write(tmp_path, vendor_toml(fake_carrier_server, serve="idle_timeout = 1"))
    p = spawn(path, "--log-level", "warning")
    port = int(p.url().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 8
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0


def test_workers_share_a_callers_daily_quota(tmp_path, spawn, fake_carrier_server):
    """--workers 2: daily_queries holds for the caller across both workers (shared memory)."""
    clients = f'\n[[serve.clients]]\nname = "billing"\nkey = "{KEY}"\ndaily_queries = 3\n'
    path = write(tmp_path, vendor_toml(fake_carrier_server, extra=clients))
    p = spawn(path, "--workers", "2", "--log-level", "warning")
    url = p.url()
    sources = []
    for i in range(8):  # new connections: both workers take some
        request = urllib.request.Request(
            f"{url}/v1/route?mobile=1390000{i:04d}", headers={"Authorization": f"Bearer {KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            sources.append(json.loads(r.read())["source"])
    assert sources.count("upstream") == 3
    assert fake_carrier_server.paid == 3
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0


def test_metrics_show_every_worker_on_any_scrape(tmp_path, spawn, fake_carrier_server):
    """--workers 2: a scrape answered by either worker shows both, labelled, and they add up."""
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    path = write(tmp_path, vendor_toml(fake_carrier_server))
    p = spawn(path, "--workers", "2", "--log-level", "warning")
    url = p.url()
    for i in range(20):  # new connections: the kernel spreads them over both workers
        assert get(f"{url}/v1/route?mobile=1390000{i:04d}")[0] == 200

    def scrape():
        _status, body = get(f"{url}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        per_worker = {}
        for s in families["smsroute_http_requests"].samples:
            if s.labels["endpoint"] == "/v1/route":
                w = s.labels["worker"]
                per_worker[w] = per_worker.get(w, 0) + s.value
        ages = {
            s.labels["worker"] for s in families["smsroute_worker_snapshot_age_seconds"].samples
        }
        return per_worker, ages

    end = time.monotonic() + 20
    while True:  # a worker's figures reach the others within SNAPSHOT_SECONDS
        per_worker, ages = scrape()
        if sum(per_worker.values()) == 20 or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert ages == {"1", "2"}
    assert set(per_worker) == {"1", "2"}, per_worker
    assert sum(per_worker.values()) == 20
    assert all(n > 0 for n in per_worker.values())
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0
