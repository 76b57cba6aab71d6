"""The apikey never leaks (logs, exceptions, reprs, tracebacks); call events; quiet by default."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

import smsroute
from smsroute import CarrierClient, LookupFailed

APIKEY = "7c11272au708345c834b8ue81ac78972"
NUMBER = "13972565391"
MASKED = "139****5391"
OK_BODY = {
    "code": 0,
    "reason": "Succ",
    "result": {
        "res": "1",
        "Mobile": NUMBER,
        "Area": "湖北-宜昌",
        "Init_isp": "移动",
        "Now_isp": "电信",
    },
}


class _Handler(BaseHTTPRequestHandler):
    """Answers like the vendor; the path's last part picks the behaviour."""

    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode() if length else urlsplit(self.path).query
        params = {k: v[0] for k, v in parse_qs(form).items()}
        mode = self.server.mode
        if mode == "slow":
            time.sleep(0.3)
        if params.get("apikey") != APIKEY or mode == "unauthorized":
            # Like many vendors, echo what was sent back in the reason.
            body = {"code": -1, "reason": f"apikey {params.get('apikey')} 不正确"}
        elif mode == "down":
            body = {"code": -8, "reason": "系统错误,请稍候再试"}
        elif mode == "text":
            raw = f"bad request: apikey={APIKEY}&mobile={NUMBER}".encode()
            self._send(raw)
            return
        else:
            body = OK_BODY
        self._send(json.dumps(body, ensure_ascii=False).encode())

    def _send(self, raw: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:  # the client gave up (timeout test)
            pass

    do_GET = do_POST = _answer  # noqa: N815 - http.server names

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test server silent."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore clients that hung up; the timeout test does that on purpose."""


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    """Run a vendor look-alike on 127.0.0.1 in a thread."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def base_url(server) -> Iterator[str]:
    """Return the server's URL and reset its behaviour afterwards."""
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.mode = "ok"


@pytest.fixture
def debug_everywhere(caplog) -> pytest.LogCaptureFixture:
    """Capture DEBUG records from every logger, urllib3 included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="smsroute")
    return caplog


def _no_retry_sleep(attempts: int = 2):
    return smsroute.default_retrying(attempts=attempts, sleep=lambda _s: None)


def _leaks(text: str) -> bool:
    """Return True when text holds the apikey or any 10-character piece of it."""
    return any(APIKEY[i : i + 10] in text for i in range(len(APIKEY) - 9))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """Yield the exception and everything reachable as cause or context, suppressed or not."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _assert_clean(exc: BaseException) -> None:
    for link in _chain(exc):
        assert not _leaks(str(link)), str(link)
        assert not _leaks(repr(link)), repr(link)
        assert NUMBER not in str(link), "exceptions carry the masked number only"
    assert not _leaks("".join(traceback.format_exception(exc)))


def _assert_records_clean(caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s")
    assert caplog.records, "nothing was logged at DEBUG"
    for record in caplog.records:
        assert not _leaks(record.getMessage()), record.getMessage()
        assert not _leaks(formatter.format(record))
    assert not _leaks(caplog.text)


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, str]]:
    """Return the logfmt fields of smsroute's records for one event name."""
    found = []
    for record in caplog.records:
        if record.name != "smsroute":
            continue
        fields = dict(part.partition("=")[::2] for part in record.getMessage().split())
        if fields.get("event") == event:
            found.append(fields)
    return found


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_successful_lookups_never_log_the_apikey(debug_everywhere, base_url, method):
    """GET puts the apikey in the URL; no record, urllib3's included, shows it."""
    with CarrierClient(APIKEY, base_url=base_url, method=method, retry=_no_retry_sleep()) as c:
        assert c.lookup(NUMBER).ported
        assert APIKEY not in repr(c)
    _assert_records_clean(debug_everywhere)
    urllib3_records = [r for r in debug_everywhere.records if r.name.startswith("urllib3")]
    assert urllib3_records
    assert all(NUMBER not in r.getMessage() for r in urllib3_records)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("mode", ["unauthorized", "down", "text"])
def test_vendor_errors_never_show_the_apikey(debug_everywhere, server, base_url, method, mode):
    """Vendor errors that echo the apikey are redacted in messages, logs and tracebacks."""
    server.mode = mode
    client = CarrierClient(APIKEY, base_url=base_url, method=method, retry=_no_retry_sleep())
    with client as c, pytest.raises(LookupFailed) as info:
        c.lookup(NUMBER)
    _assert_clean(info.value)
    _assert_records_clean(debug_everywhere)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_connection_error_never_shows_the_apikey(debug_everywhere, method):
    """A refused connection (127.0.0.1:1) raises and logs without the apikey."""
    with (
        CarrierClient(
            APIKEY, base_url="http://127.0.0.1:1", method=method, retry=_no_retry_sleep()
        ) as c,
        pytest.raises(smsroute.TransportError) as info,
    ):
        c.lookup(NUMBER)
    _assert_clean(info.value)
    _assert_records_clean(debug_everywhere)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_timeout_never_shows_the_apikey(debug_everywhere, server, base_url, method):
    """A read timeout raises and logs without the apikey."""
    server.mode = "slow"
    with (
        CarrierClient(
            APIKEY, base_url=base_url, method=method, timeout=0.05, retry=_no_retry_sleep(1)
        ) as c,
        pytest.raises(smsroute.TransportError, match="timed out") as info,
    ):
        c.lookup(NUMBER)
    _assert_clean(info.value)
    _assert_records_clean(debug_everywhere)


def test_balance_errors_never_show_the_apikey(debug_everywhere, server, base_url):
    """The balance call, which sends nothing but the apikey, does not leak it either."""
    server.mode = "unauthorized"
    client = CarrierClient(APIKEY, base_url=base_url, method="GET", retry=_no_retry_sleep())
    with client as c, pytest.raises(smsroute.Unauthorized) as info:
        c.balance()
    assert info.value.code == -1
    _assert_clean(info.value)
    _assert_records_clean(debug_everywhere)


def test_mocked_errors_never_show_the_apikey(debug_everywhere):
    """Every error path, mocked, keeps the apikey out of messages and tracebacks."""
    url = "https://isp.qxt800.com/carrier"
    bodies = [
        {"json": {"code": -1, "reason": f"apikey={APIKEY} 不正确"}},
        {"json": {"code": -9, "reason": f"{APIKEY}: ip地址鉴权失败"}},
        {"body": f"<html>apikey {APIKEY} 不正确</html>"},
        {"body": f"错误: apikey 不正确, 您的 apikey 是 {APIKEY}"},
        {"body": json.dumps({"code": 0, "result": {"Init_isp": APIKEY}})},
        {"body": smsroute.client.requests.ConnectionError(f"/carrier?apikey={APIKEY}&mobile=1")},
    ]
    with CarrierClient(APIKEY, method="GET", retry=_no_retry_sleep()) as c:
        for kwargs in bodies:
            with responses.RequestsMock() as rsps:
                rsps.get(url, **kwargs)
                with pytest.raises(LookupFailed) as info:
                    c.lookup(NUMBER)
            _assert_clean(info.value)
    _assert_records_clean(debug_everywhere)


def test_per_call_events(debug_everywhere, server, base_url):
    """Each attempt logs endpoint, masked number, code, elapsed ms and attempt number at DEBUG."""
    with CarrierClient(APIKEY, base_url=base_url, retry=_no_retry_sleep(3)) as c:
        c.lookup(NUMBER)
        server.mode = "down"
        with pytest.raises(smsroute.ServiceError):
            c.lookup(NUMBER)
    events = _events(debug_everywhere, "client.call")
    assert len(events) == 4
    for fields in events:
        assert fields["endpoint"] == "/carrier"
        assert fields["mobile"] == MASKED
        assert float(fields["ms"]) >= 0
        assert fields["level"] == "debug"
    assert [f["code"] for f in events] == ["0", "-8", "-8", "-8"]
    assert [f["attempt"] for f in events] == ["1", "1", "2", "3"]
    assert events[1]["error"] == "ServiceError"
    records = [r for r in debug_everywhere.records if r.name == "smsroute"]
    assert {r.levelno for r in records} == {logging.DEBUG}
    assert all(NUMBER not in r.getMessage() for r in records)


def test_events_respect_the_host_level(caplog, base_url):
    """With smsroute at INFO, per-call debug events are not emitted at all."""
    caplog.set_level(logging.INFO)
    with CarrierClient(APIKEY, base_url=base_url, retry=_no_retry_sleep()) as c:
        c.lookup(NUMBER)
    assert not [r for r in caplog.records if r.name == "smsroute"]


def test_insecure_transport_warning_is_logged_without_apikey(caplog):
    """The plain-http warning reaches the smsroute logger and names only the host."""
    caplog.set_level(logging.WARNING)
    with pytest.warns(UserWarning, match="plain http"):
        CarrierClient(APIKEY, base_url="http://isp.qxt800.com").close()
    (record,) = [r for r in caplog.records if r.name == "smsroute"]
    assert record.levelno == logging.WARNING
    assert "isp.qxt800.com" in record.getMessage()
    assert APIKEY not in record.getMessage()


def test_quiet_in_an_unconfigured_host():
    """A host that configured no logging sees nothing from a failing lookup, on either stream."""
    code = f"""
import smsroute
client = smsroute.CarrierClient(
    {APIKEY!r},
    base_url="http://127.0.0.1:1",
    method="GET",
    retry=smsroute.default_retrying(attempts=2, sleep=lambda s: None),
)
try:
    client.lookup("{NUMBER}")
except smsroute.LookupFailed:
    pass
else:
    raise SystemExit("lookup against a closed port succeeded")
client.close()
from smsroute._log import get_logger
get_logger().warning("test.incident", detail=1)  # warnings too stay with the host's config
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_redaction_covers_every_library_logger():
    """Once a client is built, every urllib3 and requests logger masks, lazily loaded ones too."""
    CarrierClient(APIKEY, base_url="http://127.0.0.1:9").close()
    names = [
        name
        for name in logging.root.manager.loggerDict
        if name in ("urllib3", "requests") or name.startswith(("urllib3.", "requests."))
    ]
    assert {"urllib3.connection", "urllib3.connectionpool", "urllib3.contrib.socks"} <= set(names)
    for name in names:
        logger = logging.getLogger(name)
        record = logger.makeRecord(
            name,
            logging.WARNING,
            __file__,
            1,
            "Failed to parse headers (url=%s): %s",
            (f"http://x/carrier?apikey={APIKEY}&mobile={NUMBER}", f"echo {APIKEY}"),
            None,
        )
        assert all(f.filter(record) for f in logger.filters)
        assert not _leaks(record.getMessage()), name
        assert NUMBER not in record.getMessage(), name


def test_redaction_masks_a_record_traceback():
    """An exception logged with exc_info by a library has its text masked, not only the message."""
    CarrierClient(APIKEY, base_url="http://127.0.0.1:9").close()
    logger = logging.getLogger("urllib3.connection")
    try:
        raise ValueError(f"unparsed data: 'apikey={APIKEY} {NUMBER}'")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.WARNING, __file__, 1, "boom", (), sys.exc_info()
        )
    for f in logger.filters:
        f.filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text
    assert not _leaks(text)
    assert NUMBER not in text
