"""Transport hygiene, sync and async: TLS verification on unless a connection turns it off (with a
warning), credentials never follow a redirect to another host, replies are size-capped, and no call
can hang (every request has a timeout)."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import C2M_CONN_ID, c2m_connection, conn_uri_env

from airflow_provider_postage import _transport
from airflow_provider_postage.hooks.postage import aget_postage_hook, get_postage_hook
from airflow_provider_postage.protocol.errors import PostageAPIError, PostageTransportError
from airflow_provider_postage.protocol.http import MAX_RESPONSE_BYTES
from airflow_provider_postage.sandbox import SandboxServer, SandboxState

BALANCE_XML = b'<?xml version="1.0"?><credit><balance>42.0</balance><allowNegative>false</allowNegative></credit>'


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the Click2Mail balance and remembers who asked and with what headers."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(BALANCE_XML)))
        self.end_headers()
        self.wfile.write(BALANCE_XML)

    def log_message(self, *args: Any) -> None:
        pass


def serve(tls: tuple[Path, Path] | None = None) -> tuple[http.server.HTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    server, seen = serve(self_signed)
    yield f"https://localhost:{server.server_address[1]}", seen
    server.shutdown()


def test_tls_verification_is_on_by_default(
    tls_server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = tls_server
    monkeypatch.setenv(*conn_uri_env("tls", **c2m_connection(url)))
    with pytest.raises(PostageTransportError, match="TLS handshake failed") as caught:
        get_postage_hook("tls", max_attempts=1).get_balances()
    assert caught.value.request_sent is False
    assert seen == []  # no request, so no credentials, went to the untrusted server


def test_verify_ssl_false_connects_and_warns(
    tls_server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, seen = tls_server
    monkeypatch.setenv(*conn_uri_env("tls_off", **c2m_connection(url, verify_ssl=False)))
    [balance] = get_postage_hook("tls_off").get_balances()
    assert str(balance.available) == "42.0" and len(seen) == 1
    assert "TLS certificate verification is off" in caplog.text


def test_trigger_side_honours_verify_ssl(
    tls_server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = tls_server
    monkeypatch.setenv(*conn_uri_env("tls", **c2m_connection(url)))
    monkeypatch.setenv(*conn_uri_env("tls_off", **c2m_connection(url, verify_ssl="false")))

    async def read(conn_id: str) -> Any:
        hook = await aget_postage_hook(conn_id, max_attempts=1)
        return await hook.aget_balances()

    with pytest.raises(PostageTransportError) as caught:
        asyncio.run(read("tls"))
    assert caught.value.request_sent is False
    [balance] = asyncio.run(read("tls_off"))
    assert str(balance.available) == "42.0"


def test_redirect_never_carries_credentials_elsewhere(connections: SandboxState) -> None:
    other, seen = serve()
    try:
        location = f"http://127.0.0.1:{other.server_address[1]}/molpro/credit"
        connections.inject_fault("c2m_credit", status=302, body="", headers={"Location": location}, times=2)
        with pytest.raises(PostageAPIError, match="HTTP 302"):
            get_postage_hook(C2M_CONN_ID).get_balances()

        async def read() -> Any:
            hook = await aget_postage_hook(C2M_CONN_ID, max_attempts=1)
            return await hook.aget_balances()

        with pytest.raises(PostageAPIError, match="HTTP 302"):
            asyncio.run(read())
        assert seen == []
    finally:
        other.shutdown()


def test_replies_are_size_capped(connections: SandboxState) -> None:
    huge = "<credit><balance>1</balance>" + " " * (MAX_RESPONSE_BYTES + 10) + "</credit>"
    connections.inject_fault("c2m_credit", status=200, body=huge, content_type="application/xml", times=10)
    with pytest.raises(PostageTransportError, match="larger than"):
        get_postage_hook(C2M_CONN_ID, max_attempts=1).get_balances()

    async def read() -> Any:
        hook = await aget_postage_hook(C2M_CONN_ID, max_attempts=1)
        return await hook.aget_balances()

    with pytest.raises(PostageTransportError, match="larger than"):
        asyncio.run(read())


def test_a_hanging_server_cannot_hang_the_hook_or_the_trigger(
    connections: SandboxState, sandbox: SandboxServer
) -> None:
    assert all(0 < limit < 60 for limit in _transport.DEFAULT_TIMEOUT)
    connections.inject_fault("c2m_credit", delay=3.0, times=10)
    with pytest.raises(PostageTransportError, match="read timeout"):
        get_postage_hook(C2M_CONN_ID, max_attempts=1, timeout=(1.0, 0.3)).get_balances()

    async def read() -> Any:
        hook = await aget_postage_hook(C2M_CONN_ID, max_attempts=1, timeout=(1.0, 0.3))
        return await hook.aget_balances()

    with pytest.raises(PostageTransportError, match="read timeout"):
        asyncio.run(read())


# --- the async client (aiohttp): sent-or-not decided by the wire, one session per loop -------------------

#: how each wire fault ends an async purchase whose request was delivered (tests/test_fault_matrix.py runs
#: the same faults through the hooks and operators)
ASYNC_WIRE_FAULTS: list[tuple[dict[str, Any], str, tuple[float, float]]] = [
    ({"wire": "tls_alert"}, "connection lost", (5.0, 3.0)),
    ({"wire": "corrupt_record"}, "connection lost", (5.0, 3.0)),
    ({"wire": "reset"}, "connection lost", (5.0, 3.0)),
    ({"wire": "cut_body"}, "connection lost", (5.0, 3.0)),
    ({"drop": True}, "connection lost", (5.0, 3.0)),
    ({"wire": "oversize"}, "larger than", (5.0, 3.0)),
    # a byte every 0.3 s never trips the 0.5 s read timeout: the total deadline (connect + read) ends it
    ({"wire": "trickle", "trickle_interval": 0.3}, "no complete reply within 1.5 s", (1.0, 0.5)),
    ({"delay": 2.0}, "read timeout", (5.0, 0.5)),
]


def _purchase(conn_id: str = C2M_CONN_ID) -> tuple[Any, Any]:
    from decimal import Decimal

    from airflow_provider_postage.protocol import click2mail as c2m

    settings = get_postage_hook(conn_id).settings
    billing = c2m.validate_billing(settings, today=dt.date.today())
    return settings, c2m.build_purchase_request(settings, Decimal("20"), billing)


def _asend(request: Any, verify: Any, timeout: tuple[float, float] = (1.0, 0.5)) -> Any:
    from airflow_provider_postage._drivers import shared_client

    async def go() -> Any:
        return await _transport.asend(shared_client(verify), request, timeout=timeout)

    return asyncio.run(go())


@pytest.mark.parametrize("applied", [True, False], ids=["charged", "not-charged"])
@pytest.mark.parametrize(
    ("fault", "message", "timeout"),
    ASYNC_WIRE_FAULTS,
    ids=["-".join(map(str, f.values())) for f, *_ in ASYNC_WIRE_FAULTS],
)
def test_async_purchase_broken_on_the_wire_counts_as_sent(
    connections: SandboxState, fault: dict[str, Any], message: str, timeout: tuple[float, float], applied: bool
) -> None:
    settings, request = _purchase()
    connections.inject_fault("c2m_purchase", apply=applied or "trickle" in fault.values(), **fault)
    with pytest.raises(PostageTransportError, match=message) as caught:
        _asend(request, settings.verify, timeout)
    assert caught.value.request_sent is True
    assert connections.request_count("c2m_purchase") == 1  # never resent by the client on its own
    for secret in ("4111111111111111", settings.password, "billingCvv"):
        assert secret not in str(caught.value)


def test_async_purchase_that_never_left_counts_as_not_sent(
    connections: SandboxState, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    _, request = _purchase()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = request.__class__(request.method, f"http://127.0.0.1:{port}/x", request.headers, request.body, True)
    with pytest.raises(PostageTransportError, match=r"not sent \(") as caught:
        _asend(refused, True)
    assert caught.value.request_sent is False

    # a full accept queue: the connect times out
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    try:
        hole = request.__class__(request.method, f"http://127.0.0.1:{server.getsockname()[1]}/x", {}, b"", True)
        with pytest.raises(PostageTransportError, match="connect timeout") as caught:
            _asend(hole, True, timeout=(0.3, 0.3))
        assert caught.value.request_sent is False
    finally:
        for filler in fillers:
            filler.close()
        server.close()

    # a certificate nobody trusts: refused in the handshake, before a byte of the request
    with pytest.raises(PostageTransportError, match="TLS handshake failed") as caught:
        _asend(request, True)
    assert caught.value.request_sent is False
    assert connections.request_count("c2m_purchase") == 0


def test_async_replies_are_decoded_and_headers_joined(connections: SandboxState) -> None:
    from airflow_provider_postage.protocol import click2mail as c2m

    settings = get_postage_hook(C2M_CONN_ID).settings
    reply = _asend(c2m.build_balance_request(settings), settings.verify)
    assert reply.status == 200 and reply.headers["content-encoding"] == "gzip"
    assert reply.body.startswith(b"<?xml") or b"<credit" in reply.body  # decoded


class Canned(http.server.BaseHTTPRequestHandler):
    """Answers every GET with ``reply`` (headers, body) and remembers the request headers."""

    seen: list[dict[str, str]]
    reply: tuple[list[tuple[str, str]], bytes]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        headers, body = self.reply
        self.send_response(200)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def canned(headers: list[tuple[str, str]], body: bytes) -> tuple[http.server.HTTPServer, str]:
    Canned.seen, Canned.reply = [], (headers, body)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_async_client_keeps_no_cookies_and_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's client is shared by every connection: nothing one account's replies set may go out
    with another's requests; proxies from the environment are not used."""
    from airflow_provider_postage.protocol.http import HttpRequest

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    cookies = [("Set-Cookie", "session=from-the-first-account; Path=/"), ("Set-Cookie", "other=1; Path=/")]
    server, url = canned(cookies, b"ok")
    try:

        async def twice() -> Any:
            from airflow_provider_postage._drivers import shared_client

            first = await _transport.asend(shared_client(True), HttpRequest("GET", url))
            await _transport.asend(shared_client(True), HttpRequest("GET", url))
            return first

        first = asyncio.run(twice())
    finally:
        server.shutdown()
    assert first.headers["set-cookie"] == "session=from-the-first-account; Path=/, other=1; Path=/"
    assert len(Canned.seen) == 2
    assert not any("Cookie" in headers for headers in Canned.seen)


def test_async_client_is_one_per_loop_and_closed_with_it() -> None:
    from airflow_provider_postage._drivers import shared_client

    async def clients() -> list[Any]:
        return [shared_client(True), shared_client(True), shared_client(False)]

    first = asyncio.run(clients())
    second = asyncio.run(clients())
    assert first[0] is first[1] and first[0] is not first[2]  # one per loop and TLS setting
    assert second[0] is not first[0]
    assert all(client.closed for client in first + second)  # closed when asyncio.run shut the loop down
    # aiohttp resends some requests on its own on a dead kept-alive connection; ours turns that off
    # through this attribute, so an aiohttp that renamed it must fail here rather than resend a purchase
    assert first[0]._retry_connection is False


def test_async_size_cap_counts_decoded_bytes() -> None:
    import gzip

    from airflow_provider_postage.protocol.http import HttpRequest

    server, url = canned([("Content-Encoding", "gzip")], gzip.compress(b"\0" * (20 * 1024 * 1024)))  # ~20 KiB
    try:
        request = HttpRequest("GET", url)
        with pytest.raises(PostageTransportError, match="larger than") as caught:
            _asend(request, True, (5.0, 5.0))
    finally:
        server.shutdown()
    assert caught.value.request_sent is True


# --- sync: the request prepared without Session.request ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "body"),
    [
        ("GET", {"Accept": "application/xml", "Authorization": "Basic ZGVtbzpwdw=="}, None),
        ("post", {"accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=%C3%A9"),
    ],
)
def test_sync_request_is_prepared_as_session_request_prepares_it(
    method: str, headers: dict[str, str], body: bytes | None
) -> None:
    """send() prepares the request itself (Session.request's merges of empty settings cost a tenth of a
    read): the same method, URL, headers in the same order (the request's over the session's defaults,
    case-insensitively), body, cookies and hooks as ``Session.request`` would send."""
    import requests

    from airflow_provider_postage.protocol.http import HttpRequest

    session = _transport.new_session()
    session.cookies.set("sticky", "1", domain="api.example.test", path="/")
    request = HttpRequest(method, "https://api.example.test/molpro/credit", headers, body)
    ours = _transport._prepare(session, request)
    theirs = session.prepare_request(
        requests.Request(method.upper(), request.url, headers=dict(headers), data=body or {}, params={})
    )
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.headers["Cookie"] == "sticky=1"
    assert ours.hooks == theirs.hooks


def test_sync_session_keeps_its_cookies_and_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook's session is its own connection's (unlike the loop's shared async client): cookies its replies
    set go back with its next request, as Session.request did; proxies from the environment are not used;
    reply headers come back lower-cased, repeated ones joined."""
    from airflow_provider_postage.protocol.http import HttpRequest

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    server, url = canned([("Set-Cookie", "lb=node-1; Path=/"), ("X-Trace", "a"), ("X-Trace", "b")], b"ok")
    try:
        session = _transport.new_session()
        first = _transport.send(session, HttpRequest("GET", url, {"Accept": "text/plain"}), timeout=(5.0, 5.0))
        _transport.send(session, HttpRequest("GET", url), timeout=(5.0, 5.0))
    finally:
        server.shutdown()
    assert (first.status, first.body) == (200, b"ok")
    assert first.headers["x-trace"] == "a, b" and first.headers["set-cookie"] == "lb=node-1; Path=/"
    assert all(name == name.lower() for name in first.headers)
    assert Canned.seen[0]["Accept"] == "text/plain" and "Cookie" not in Canned.seen[0]
    assert Canned.seen[1]["Cookie"] == "lb=node-1"


def test_sync_request_refused_locally_counts_as_not_sent() -> None:
    """A header requests refuses while preparing fails like any transport failure, as never sent."""
    from airflow_provider_postage.protocol.http import HttpRequest

    request = HttpRequest("POST", "http://127.0.0.1:9/x", {"X-Bad": "a\r\nInjected: 1"}, b"", moves_money=True)
    with pytest.raises(PostageTransportError, match="refused locally") as caught:
        _transport.send(_transport.new_session(), request, timeout=(1.0, 1.0))
    assert caught.value.request_sent is False
