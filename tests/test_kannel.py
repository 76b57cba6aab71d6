"""The Kannel pass-through: its rules, a recording fake smsbox, then a real Kannel and fakesmscs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import string
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer

from smsroute import AsyncCarrierClient, AsyncRouter, Carrier, ConfigurationError, InvalidNumber
from smsroute.decision import Decision
from smsroute.segments import default_table
from smsroute.serve.kannel import (
    SENDSMS_PATH,
    KannelAnswer,
    kannel_app,
    kannel_routes,
    merge_answers,
    rewrite_headers,
    rewrite_query,
    split_recipients,
)
from smsroute.testing import FakeCarrierServer

GATEWAYS = {"移动": "cmcc", "联通": "cucc", "电信": "ctcc"}
PORTED = "13972565391"  # a 移动 segment, ported to 电信
TEXT = "您的验证码是 123456，5分钟内有效。【短信路由】"
GBK = TEXT.encode("gbk")
GBK_Q = quote_from_bytes(GBK, safe="")  # what a legacy platform puts in text=
HERE = Path(__file__).parent


def _find(name: str, *dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((f"{d}/{name}" for d in dirs if os.access(f"{d}/{name}", os.X_OK)), None)


BEARERBOX = _find("bearerbox", "/usr/sbin", "/usr/local/sbin")
SMSBOX = _find("smsbox", "/usr/sbin", "/usr/local/sbin")
FAKESMSC = _find("fakesmsc", "/usr/lib/kannel/test", "/usr/local/lib/kannel/test")
needs_kannel = pytest.mark.skipif(
    not (BEARERBOX and SMSBOX and FAKESMSC),
    reason="Kannel is not installed (bearerbox, smsbox, fakesmsc): .ci/install-kannel "
    "installs the Debian packages kannel and kannel-extras",
)


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeCarrierServer]:
    """Start one fake vendor for the module, with the numbers the tests route pinned."""
    with FakeCarrierServer(seed=7) as server:
        server.set_answer(PORTED, res=1, init="移动", now="电信")
        server.set_answer("18612345679", res=1, init="联通", now="移动")
        for number, carrier in [
            ("13800138000", "移动"),
            ("18612345678", "联通"),
            ("18912345678", "电信"),
        ]:
            server.set_answer(number, res=0, init=carrier, now=carrier)
        yield server


@pytest.fixture(autouse=True)
def _healthy_vendor(vendor: FakeCarrierServer) -> Iterator[None]:
    yield
    vendor.set_fault(None)


def run(coro):
    """Run one scenario on a fresh event loop."""
    return asyncio.run(coro)


@dataclass
class Front:
    """The pass-through under test: its sendsms URL, an HTTP client and the router."""

    url: str
    http: aiohttp.ClientSession
    router: AsyncRouter

    async def get(self, query: str, base: str | None = None) -> tuple[int, bytes, dict]:
        """GET ``base?query`` with the query sent exactly as given."""
        target = yarl.URL(f"{base or self.url}?{query}", encoded=True)
        async with self.http.get(target) as resp:
            return resp.status, await resp.read(), dict(resp.headers)

    async def post(self, body: bytes, headers: dict, base: str | None = None):
        """POST a body with headers, as Kannel takes it."""
        async with self.http.post(base or self.url, data=body, headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


@contextlib.asynccontextmanager
async def front(
    vendor: FakeCarrierServer, sendsms_url: str, *, deadline: float = 0.5, gateways=None
) -> AsyncIterator[Front]:
    """Serve kannel_app() over an AsyncRouter on the fake vendor, on 127.0.0.1."""
    client = AsyncCarrierClient(vendor.apikey, base_url=vendor.url)
    router = AsyncRouter(client, gateways or GATEWAYS, deadline=deadline)
    server = TestServer(kannel_app(router, sendsms_url, timeout=3.0), host="127.0.0.1")
    await server.start_server()
    try:
        # Bounded: a test that goes wrong fails in seconds, not in aiohttp's five minutes.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            yield Front(str(server.make_url(SENDSMS_PATH)), http, router)
    finally:
        await server.close()
        await router.aclose()
        await client.aclose()


# -- the rules, without I/O ---------------------------------------------------------


def test_query_keeps_every_byte_but_smsc():
    """Only smsc= changes: GBK, odd escapes and order stay; ours replaces the first smsc."""
    query = f"smsc=old&username=u&text={GBK_Q}&charset=GBK&to=139+7256&%73msc=x&e=%zz+%41"
    pieces = query.split("&")
    out = rewrite_query(pieces, "ctcc", to_index=4)
    assert out == f"smsc=ctcc&username=u&text={GBK_Q}&charset=GBK&to=139+7256&e=%zz+%41"
    assert rewrite_query(pieces[1:4], "c c", to_index=3) == f"{'&'.join(pieces[1:4])}&smsc=c%20c"
    assert rewrite_query(pieces, None, to_index=4) == query


def test_query_to_is_rewritten_only_for_a_split():
    """A split request gets its group's recipients, each quoted, in to's own place."""
    pieces = ["to=13972565391+%2B8618612345678", "text=a"]
    out = rewrite_query(pieces, "cucc", to_index=0, to=["+8618612345678", "186 1234"])
    assert out == "to=%2B8618612345678+186%201234&text=a&smsc=cucc"


def test_recipients_split_on_whitespace_as_smsbox_does():
    """'+', %20 and tabs separate recipients; bytes that are not ASCII are no number."""
    assert split_recipients(unquote_to_bytes("139%20186\t189  133")) == [
        "139",
        "186",
        "189",
        "133",
    ]
    assert split_recipients(b"") == []
    with pytest.raises(InvalidNumber):
        split_recipients("1397256539１".encode())


def test_post_headers_keep_only_what_smsbox_reads():
    """Content-Type and X-Kannel-* go on in order; Authorization does not; SMSC is replaced."""
    headers = [
        ("Authorization", "Bearer smsroute-key"),
        ("Content-Type", "text/plain; charset=GBK"),
        ("x-kannel-smsc", "cmcc"),
        ("X-Kannel-To", "139 186"),
        ("X-Kannel-Username", "u"),
        ("X-Kannel-SMSC", "cmcc2"),
    ]
    assert rewrite_headers(headers, "ctcc") == [
        ("Content-Type", "text/plain; charset=GBK"),
        ("X-Kannel-To", "139 186"),
        ("X-Kannel-Username", "u"),
        ("X-Kannel-SMSC", "ctcc"),
    ]
    assert rewrite_headers(headers, None, to=["186"])[-1] == ("X-Kannel-To", "186")


def test_merged_answers():
    """Equal answers pass as one; a partial failure names the failed receivers, as smsbox does."""
    ok = KannelAnswer(202, b"0: Accepted for delivery")
    queued = KannelAnswer(202, b"3: Queued for later delivery")
    denied = KannelAnswer(403, b"Authorization failed for sendsms")
    assert merge_answers([(["1"], ok), (["2", "3"], ok)]) is ok
    assert merge_answers([(["1"], ok), (["2"], queued)]) is queued
    assert merge_answers([(["1"], denied), (["2"], denied)]) is denied
    down = KannelAnswer(503, b"Temporal failure, try again later.")
    assert merge_answers([(["1"], denied), (["2"], down)]) is down
    mixed = merge_answers([(["139"], ok), (["186", "185"], down)])
    assert (mixed.status, mixed.body) == (
        503,
        b"Temporal failure, try again later. Failed receivers are: 186 185",
    )


def test_configuration_is_checked_up_front():
    """A URL that is not http(s), a gateway that is no smsc-id, a bad timeout: raised at setup."""
    router = AsyncRouter(object(), GATEWAYS)
    with pytest.raises(ConfigurationError):
        kannel_routes(router, "ftp://127.0.0.1/cgi-bin/sendsms")
    with pytest.raises(ConfigurationError):
        kannel_routes(router, "http://127.0.0.1:13013/cgi-bin/sendsms?user=x")
    with pytest.raises(ValueError):
        kannel_routes(router, "http://127.0.0.1:13013/cgi-bin/sendsms", timeout=0)
    for bad in ({"移动": "cm;cc"}, {"移动": "cm cc"}, {"移动": 3}):
        with pytest.raises(ConfigurationError):
            kannel_routes(AsyncRouter(object(), bad), "http://127.0.0.1/cgi-bin/sendsms")


# -- the pass-through against a recording fake Kannel -------------------------------


@contextlib.asynccontextmanager
async def recorder(status: int = 202, body: bytes = b"0: Accepted for delivery"):
    """Serve a fake smsbox that records each request's raw target, headers and body."""
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []

    async def sendsms(request: web.Request) -> web.Response:
        raw = [(k.decode(), v.decode("latin-1")) for k, v in request.raw_headers]
        seen.append((request.raw_path, raw, await request.read()))
        return web.Response(status=status, body=body, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", SENDSMS_PATH, sendsms)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url(SENDSMS_PATH)), seen
    finally:
        await server.close()


def test_get_goes_on_byte_for_byte_with_smsc(vendor):
    """The query reaches smsbox as sent, GBK text and all, with smsc= of the current operator."""
    query = f"username=u&password=p&from=1069&to={PORTED}&charset=GBK&coding=2&text={GBK_Q}"

    async def scenario():
        async with recorder() as (url, seen), front(vendor, url) as f:
            status, body, headers = await f.get(query)
            assert (status, body) == (202, b"0: Accepted for delivery")
            assert headers["X-Smsroute-Smsc"] == "ctcc"
            assert [s[0] for s in seen] == [f"{SENDSMS_PATH}?{query}&smsc=ctcc"]

    run(scenario())


def test_post_goes_on_with_its_body_and_headers(vendor):
    """A POST's body reaches smsbox unread; X-Kannel-SMSC is replaced; Authorization stays here."""
    headers = {
        "Content-Type": "text/plain; charset=GBK",
        "Authorization": "Bearer smsroute-key",
        "X-Kannel-Username": "u",
        "X-Kannel-To": PORTED,
        "X-Kannel-SMSC": "cmcc",
    }

    async def scenario():
        async with recorder() as (url, seen), front(vendor, url) as f:
            assert (await f.post(GBK, headers))[:2] == (202, b"0: Accepted for delivery")
            (_target, sent, body) = seen[0]
            assert body == GBK
            names = {k.lower(): v for k, v in sent}
            assert names["x-kannel-smsc"] == "ctcc"
            assert names["content-type"] == "text/plain; charset=GBK"
            assert "authorization" not in names
            assert (await f.post(b"<xml/>", {"Content-Type": "text/xml"}))[0] == 415
            async with f.http.head(f.url) as resp:
                assert resp.status == 405  # a HEAD would send a message
            assert len(seen) == 1

    run(scenario())


def test_mixed_recipients_are_split_per_gateway(vendor):
    """One request per SMSC, each with its own numbers; one Kannel-style answer back."""
    query = f"username=u&to={PORTED}+18612345678+13800138000+18612345679&text=hi"

    async def scenario():
        async with recorder() as (url, seen), front(vendor, url) as f:
            status, body, headers = await f.get(query)
            assert (status, body) == (202, b"0: Accepted for delivery")
            assert headers["X-Smsroute-Smsc"] == "ctcc,cucc,cmcc"
            assert sorted(s[0] for s in seen) == sorted(
                f"{SENDSMS_PATH}?username=u&to={to}&text=hi&smsc={smsc}"
                for to, smsc in [
                    (PORTED, "ctcc"),
                    ("18612345678", "cucc"),
                    ("13800138000+18612345679", "cmcc"),
                ]
            )
            seen.clear()
            same = "username=u&to=13800138000+18612345679&text=hi"
            await f.get(same)  # one operator: forwarded as it came
            assert [s[0] for s in seen] == [f"{SENDSMS_PATH}?{same}&smsc=cmcc"]

    run(scenario())


def test_invalid_or_missing_to(vendor):
    """A bad number is refused here, unpaid; a missing one is Kannel's to answer."""

    async def scenario():
        missing = b"Missing receiver number, rejected"
        async with recorder(400, missing) as (url, seen), front(vendor, url) as f:
            paid = vendor.paid
            for to in ("12345", f"{PORTED}+10086", "%E4%BD%A0"):
                status, body, _h = await f.get(f"username=u&to={to}&text=x")
                assert status == 400
                assert body.startswith(b"Invalid receiver number (")
            assert seen == []
            assert vendor.paid == paid
            assert (await f.get("username=u&text=x"))[:2] == (400, missing)
            assert [s[0] for s in seen] == [f"{SENDSMS_PATH}?username=u&text=x"]
            assert vendor.paid == paid

    run(scenario())


def test_number_without_a_gateway_goes_by_kannels_routing(vendor):
    """No gateway for 广电 and no default: forwarded with the client's own smsc= left alone."""

    async def scenario():
        async with recorder() as (url, seen), front(vendor, url) as f:
            assert (await f.get("to=19212345678&smsc=mine&text=x"))[0] == 202
            assert [s[0] for s in seen] == [f"{SENDSMS_PATH}?to=19212345678&smsc=mine&text=x"]

    run(scenario())


class View:
    """A router seen through a mapping of its own, with only ``route()``: the NumberRouter shape."""

    def __init__(self, router: AsyncRouter) -> None:
        self.router = router

    async def route(self, number: str) -> Decision:
        d = await self.router.route(number)
        return Decision(d.mobile, d.carrier, f"{d.gateway}-2", d.source, d.info, d.reason, d.answer)


def test_any_router_with_route_will_do(vendor):
    """kannel_routes() takes any object whose async route() gives a Decision."""

    async def scenario():
        async with recorder() as (url, seen):
            client = AsyncCarrierClient(vendor.apikey, base_url=vendor.url)
            router = AsyncRouter(client, GATEWAYS)
            server = TestServer(kannel_app(View(router), url), host="127.0.0.1")
            await server.start_server()
            try:
                async with aiohttp.ClientSession() as http:
                    target = yarl.URL(f"{server.make_url(SENDSMS_PATH)}?to={PORTED}", encoded=True)
                    async with http.get(target) as resp:
                        assert resp.headers["X-Smsroute-Smsc"] == "ctcc-2"
            finally:
                await server.close()
                await client.aclose()
            assert [s[0] for s in seen] == [f"{SENDSMS_PATH}?to={PORTED}&smsc=ctcc-2"]

    run(scenario())


def test_kannel_down_is_a_temporal_failure(vendor):
    """Nothing listening at sendsms_url: 503 with smsbox's own words for a temporary failure."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        async with front(vendor, f"http://127.0.0.1:{port}/cgi-bin/sendsms") as f:
            assert (await f.get(f"to={PORTED}&text=x"))[:2] == (
                503,
                b"Temporal failure, try again later.",
            )

    run(scenario())


# -- a real Kannel ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message a fakesmsc printed: ``<sender receiver type data>``."""

    smsc: str
    receiver: str
    kind: str  # text, data (8-bit), ucs-2
    data: bytes  # as printed: raw for text, %-escaped for data and ucs-2

    @property
    def payload(self) -> bytes:
        """Return the message's bytes as the SMSC got them."""
        # smsc_fake escapes with octstr_url_encode(): %XX, and '+' for a space.
        return self.data if self.kind == "text" else unquote_to_bytes(self.data.replace(b"+", b" "))

    @property
    def text(self) -> str:
        """Return the message's text (UCS-2 decoded; 7-bit and 8-bit read as UTF-8)."""
        return self.payload.decode("utf-16-be" if self.kind == "ucs-2" else "utf-8", "replace")


_GOT = re.compile(rb"Got message \d+: <(\S*) (\S+) (text|data|ucs-2) (.*)>$", re.M)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _prefixes(carrier: Carrier) -> str:
    # The gateway's segment routing, from the same table as smsroute's fallback.
    rows = default_table().rows()
    return ";".join(r.prefix for r in rows if r.carrier is carrier and r.kind == "regular")


class Kannel:
    """bearerbox, smsbox and a fakesmsc per operator, on free ports of 127.0.0.1."""

    SMSCS: ClassVar = {"cmcc": Carrier.MOBILE, "cucc": Carrier.UNICOM, "ctcc": Carrier.TELECOM}
    STARTUP = 5.0  # seconds; it takes well under one

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        names = ["admin", "smsbox", "sendsms", *self.SMSCS]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.username, self.password = "app", "s3cret"
        self.sendsms_url = f"http://127.0.0.1:{self.ports['sendsms']}{SENDSMS_PATH}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        template = string.Template((HERE / "kannel" / "kannel.conf.in").read_text("utf-8"))
        self.conf = workdir / "kannel.conf"
        self.conf.write_text(
            template.substitute(
                admin_port=self.ports["admin"],
                admin_password="adm1n",
                smsbox_port=self.ports["smsbox"],
                sendsms_port=self.ports["sendsms"],
                username=self.username,
                password=self.password,
                **{f"{s}_port": self.ports[s] for s in self.SMSCS},
                **{f"{s}_prefixes": _prefixes(c) for s, c in self.SMSCS.items()},
            ),
            "utf-8",
        )

    def _spawn(self, name: str, *argv: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        self.procs[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        log.close()

    def status(self) -> str:
        """Return bearerbox's status page, or '' while it is not answering."""
        url = f"http://127.0.0.1:{self.ports['admin']}/status.txt?password=adm1n"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait(self, what: str, ready: Callable[[], bool], end: float) -> None:
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > end:
                raise RuntimeError(f"Kannel not up ({what}; exited: {dead})\n{self.logs()}")
            time.sleep(0.05)

    def start(self) -> Kannel:
        """Start the boxes and the fake SMSCs; return once every SMSC is online."""
        assert BEARERBOX
        assert SMSBOX
        assert FAKESMSC
        end = time.monotonic() + self.STARTUP
        self._spawn("bearerbox", BEARERBOX, "-v", "1", str(self.conf))
        self._wait("bearerbox", lambda: all(f"{s}[{s}]" in self.status() for s in self.SMSCS), end)
        for smsc in self.SMSCS:
            # -m 0: send no MO message, only print what the SMSC is given.
            port = str(self.ports[smsc])
            self._spawn(smsc, FAKESMSC, "-H", "127.0.0.1", "-r", port, "-m", "0", "1 2 text x")
        self._spawn("smsbox", SMSBOX, "-v", "1", str(self.conf))

        def online() -> bool:
            page = self.status()
            return "smsbox:" in page and all(
                re.search(rf"{s}\[{s}\]\s+FAKE:\d+ \(online", page) for s in self.SMSCS
            )

        self._wait("SMSCs online, smsbox connected", online, end)
        self._wait("sendsms port", self._sendsms_listens, end)
        return self

    def _sendsms_listens(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.ports["sendsms"]), timeout=0.2),
        ):
            return True
        return False

    def stop(self) -> None:
        """Stop every process this harness started (smsbox first), killing what lingers."""
        for name in ["smsbox", *self.SMSCS, "bearerbox"]:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)

    def logs(self) -> str:
        """Return the tail of every log, for a failure message."""
        out = []
        for path in sorted(self.dir.glob("*.log")):
            tail = path.read_bytes()[-1500:].decode("utf-8", "replace")
            out.append(f"--- {path.name}\n{tail}")
        return "\n".join(out)

    def received(self) -> list[Received]:
        """Return every message the fake SMSCs have printed so far."""
        out = []
        for smsc in self.SMSCS:
            raw = (self.dir / f"{smsc}.log").read_bytes()
            for m in _GOT.finditer(raw):
                out.append(Received(smsc, m[2].decode(), m[3].decode(), m[4]))
        return out

    def arrived(
        self, match: Callable[[Received], bool], count: int = 1, timeout: float = 5.0
    ) -> list[Received]:
        """Return the messages that ``match``, once ``count`` have arrived (or time is up)."""
        end = time.monotonic() + timeout
        while True:
            got = [r for r in self.received() if match(r)]
            if len(got) >= count or time.monotonic() > end:
                return got
            time.sleep(0.02)

    def wait_for(self, receiver: str, text: str) -> list[Received]:
        """Return the messages to ``receiver`` with ``text``, once one has arrived."""
        return self.arrived(lambda r: r.receiver == receiver and r.text == text)

    def smsbox_requests(self) -> int:
        """Return how many HTTP requests smsbox has logged."""
        return (self.dir / "smsbox.log").read_bytes().count(b"smsbox: Got HTTP request")


@pytest.fixture(scope="module")
def kannel(tmp_path_factory) -> Iterator[Kannel]:
    """Run one real Kannel for the module; every process is stopped afterwards."""
    harness = Kannel(tmp_path_factory.mktemp("kannel"))
    try:
        yield harness.start()
    finally:
        harness.stop()


def _sendsms(kannel: Kannel, to: str, text: str, **extra: str) -> str:
    params = {
        "username": kannel.username,
        "password": kannel.password,
        "from": "1069000",
        "to": to,
        "text": quote_from_bytes(text.encode(), safe=""),
        **extra,
    }
    return "&".join(f"{k}={v}" for k, v in params.items())


@needs_kannel
def test_ported_number_reaches_its_current_operator(kannel, vendor):
    """Straight to Kannel a ported 139 goes by segment to 移动; through smsroute to 电信."""
    direct, routed = "port-test direct", "port-test routed"

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            assert (await f.get(_sendsms(kannel, PORTED, direct), kannel.sendsms_url))[:2] == (
                202,
                b"0: Accepted for delivery",
            )
            status, body, headers = await f.get(_sendsms(kannel, PORTED, routed))
            assert (status, body) == (202, b"0: Accepted for delivery")
            assert (headers["X-Smsroute-Smsc"], headers["X-Smsroute-Source"]) == (
                "ctcc",
                "upstream",
            )

    run(scenario())
    assert [r.smsc for r in kannel.wait_for(PORTED, direct)] == ["cmcc"]  # what porting breaks
    assert [r.smsc for r in kannel.wait_for(PORTED, routed)] == ["ctcc"]


@needs_kannel
@pytest.mark.parametrize(
    ("number", "smsc"),
    [
        ("13800138000", "cmcc"),
        ("18612345678", "cucc"),
        ("18912345678", "ctcc"),
        ("18612345679", "cmcc"),
    ],
)
def test_each_number_reaches_its_operators_smsc(kannel, vendor, number, smsc):
    """Unported numbers reach their segment's SMSC, a 联通 number ported to 移动 reaches cmcc."""
    text = f"operator-test {number}"

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            assert (await f.get(_sendsms(kannel, number, text)))[0] == 202

    run(scenario())
    assert [r.smsc for r in kannel.wait_for(number, text)] == [smsc]


@needs_kannel
def test_gbk_text_arrives_intact(kannel, vendor):
    """GBK text with charset=GBK: Kannel decodes it to the same UCS-2, and 8-bit keeps its bytes."""
    base = f"username=app&password=s3cret&from=1069000&to={PORTED}&charset=GBK&text={GBK_Q}"

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            assert (await f.get(base + "&coding=2"))[0] == 202
            assert (await f.get(base.replace("to=", "to=18912345678+") + "&coding=1"))[0] == 202

    run(scenario())
    (ucs2,) = kannel.wait_for(PORTED, TEXT)
    assert (ucs2.smsc, ucs2.kind, ucs2.payload) == ("ctcc", "ucs-2", TEXT.encode("utf-16-be"))
    eight_bit = kannel.arrived(lambda r: r.kind == "data" and r.payload == GBK, count=2)
    assert sorted((r.receiver, r.smsc) for r in eight_bit) == [
        (PORTED, "ctcc"),
        ("18912345678", "ctcc"),
    ]


@needs_kannel
def test_post_the_kannel_way(kannel, vendor):
    """POST: GBK body, X-Kannel-* headers, the client's own X-Kannel-SMSC guess overruled."""
    text = TEXT + " POST"
    headers = {
        "Content-Type": "text/plain; charset=GBK",
        "X-Kannel-Username": kannel.username,
        "X-Kannel-Password": kannel.password,
        "X-Kannel-From": "1069000",
        "X-Kannel-To": PORTED,
        "X-Kannel-Coding": "2",
        "X-Kannel-SMSC": "cmcc",
    }

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            status, body, _h = await f.post(text.encode("gbk"), headers)
            assert (status, body) == (202, b"0: Accepted for delivery")

    run(scenario())
    assert [(r.smsc, r.kind) for r in kannel.wait_for(PORTED, text)] == [("ctcc", "ucs-2")]


@needs_kannel
@pytest.mark.parametrize(
    ("change", "status", "body"),
    [
        ({}, 202, b"0: Accepted for delivery"),
        ({"password": "wrong"}, 403, b"Authorization failed for sendsms"),
        ({"udh": "%05"}, 400, b"UDH field misformed, rejected"),
    ],
    ids=["202", "403", "400"],
)
def test_kannels_answers_pass_through_unchanged(kannel, vendor, change, status, body):
    """Through smsroute a request gets what Kannel itself answers to it with smsc= set."""
    params = dict(p.split("=", 1) for p in _sendsms(kannel, PORTED, f"answer {status}").split("&"))
    query = "&".join(f"{k}={v}" for k, v in {**params, **change}.items())

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            mine = await f.get(query)
            theirs = await f.get(query + "&smsc=ctcc", kannel.sendsms_url)
        return mine, theirs

    mine, theirs = run(scenario())
    assert (mine[0], mine[1]) == (theirs[0], theirs[1]) == (status, body)
    assert mine[2]["Content-Type"] == theirs[2]["Content-Type"] == "text/html"


@needs_kannel
def test_invalid_to_never_reaches_kannel(kannel, vendor):
    """A receiver that is no mobile number gets a 400 here: smsbox sees nothing, nothing is paid."""

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            before = kannel.smsbox_requests()
            await f.get(_sendsms(kannel, "10086", "direct"), kannel.sendsms_url)
            counted, paid = kannel.smsbox_requests(), vendor.paid
            assert counted == before + 1  # smsbox logs each request it gets
            answer = await f.get(_sendsms(kannel, "10086", "invalid"))
            assert (kannel.smsbox_requests(), vendor.paid) == (counted, paid)
            return answer

    status, body, _h = run(scenario())
    assert (status, body) == (
        400,
        b"Invalid receiver number (too short: 5 digits, a mobile number has 11), rejected",
    )


@needs_kannel
@pytest.mark.parametrize("fault", ["http502", "hang"])
def test_vendor_outage_still_delivers(kannel, vendor, fault):
    """The vendor down or hanging: the segment table routes, and the message goes out."""
    number, text = "13912340000", f"outage {fault}"
    vendor.set_fault(fault)

    async def scenario():
        async with front(vendor, kannel.sendsms_url, deadline=0.3) as f:
            started = time.monotonic()
            status, _b, headers = await f.get(_sendsms(kannel, number, text))
            return status, headers, time.monotonic() - started

    status, headers, took = run(scenario())
    assert (status, headers["X-Smsroute-Smsc"], headers["X-Smsroute-Source"]) == (
        202,
        "cmcc",
        "fallback",
    )
    assert took < 2.0
    assert [r.smsc for r in kannel.wait_for(number, text)] == ["cmcc"]


@needs_kannel
def test_mixed_recipients_reach_each_operator(kannel, vendor):
    """One request to three operators: each number at its SMSC, one 202 back."""
    text = "mixed recipients"
    numbers = {PORTED: "ctcc", "18612345678": "cucc", "13800138000": "cmcc"}

    async def scenario():
        async with front(vendor, kannel.sendsms_url) as f:
            return await f.get(_sendsms(kannel, "+".join(numbers), text))

    status, body, headers = run(scenario())
    assert (status, body, headers["X-Smsroute-Smsc"]) == (
        202,
        b"0: Accepted for delivery",
        "ctcc,cucc,cmcc",
    )
    for number, smsc in numbers.items():
        assert [r.smsc for r in kannel.wait_for(number, text)] == [smsc]
