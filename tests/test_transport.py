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
