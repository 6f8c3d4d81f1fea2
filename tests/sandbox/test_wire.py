"""The sandbox on the wire: HTTPS, compression, chunked bodies and wire faults, over real sockets with
requests, httpx and httpx's async client."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_postage.sandbox import (
    DEFAULT_C2M_PASSWORD,
    DEFAULT_C2M_USERNAME,
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_API_SECRET,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_PRN,
    WIRE_FAULTS,
    Fault,
    InvalidSettingError,
    SandboxServer,
    SandboxState,
    Seed,
)
from airflow_provider_postage.sandbox.__main__ import main as cli_main
from airflow_provider_postage.sandbox.state import WireFault
from airflow_provider_postage.sandbox.wire import choose_coding

REPO_ROOT = Path(__file__).resolve().parents[2]
C2M_AUTH = (DEFAULT_C2M_USERNAME, DEFAULT_C2M_PASSWORD)
PB_AUTH = (DEFAULT_PB_API_KEY, DEFAULT_PB_API_SECRET)
CREDIT_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<credit>\n    <balance>5.0</balance>\n'
    "    <allowNegative>false</allowNegative>\n</credit>\n"
)
MiB = 1024 * 1024
BILLING = {
    "billingName": "Awesome User",
    "billingAddress1": "221B Baker St",
    "billingCity": "Springfield",
    "billingState": "MO",
    "billingZip": "34567",
    "billingAmount": "10",
    "billingNumber": "4111111111111111",
    "billingMonth": "12",
    "billingYear": str(date.today().year + 4),
    "billingCvv": "123",
    "billingCcType": "VI",
}


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http_server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def https_server() -> Iterator[SandboxServer]:
    with SandboxServer(tls=True) as srv:
        yield srv


@pytest.fixture(params=["https", "http"])
def server(request: pytest.FixtureRequest) -> SandboxServer:
    """Each test twice: over TLS and over plain HTTP, on a sandbox back at its seed."""
    srv: SandboxServer = request.getfixturevalue(f"{request.param}_server")
    srv.state.reset()
    return srv


@pytest.fixture
def tls_server(https_server: SandboxServer) -> SandboxServer:
    https_server.state.reset()
    return https_server


def verify(srv: SandboxServer) -> str | bool:
    """requests' ``verify=``."""
    return srv.ca_path if srv.ca_path is not None else True


def httpx_verify(srv: SandboxServer) -> ssl.SSLContext | bool:
    """httpx's ``verify=`` (a path string is deprecated there)."""
    return srv.client_ssl_context() if srv.tls else True


def credit_url(srv: SandboxServer) -> str:
    return f"{srv.url}/molpro/credit"


def purchase_url(srv: SandboxServer) -> str:
    return f"{srv.url}/molpro/credit/purchase"


def fund_url(srv: SandboxServer) -> str:
    return f"{srv.url}/shippingservices/v1/developers/{DEFAULT_PB_DEVELOPER_ID}/merchants/{DEFAULT_PB_PRN}/account/fund"


def balance_url(srv: SandboxServer) -> str:
    return (
        f"{srv.url}/shippingservices/v1/developers/{DEFAULT_PB_DEVELOPER_ID}/merchants/{DEFAULT_PB_PRN}/account-balance"
    )


def get_token(srv: SandboxServer) -> str:
    r = requests.post(
        f"{srv.url}/oauth/token",
        auth=PB_AUTH,
        data={"grant_type": "client_credentials"},
        verify=verify(srv),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def raw_exchange(srv: SandboxServer, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a fresh (TLS) socket and read until the server closes."""
    sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
    conn: socket.socket = sock
    try:
        if srv.tls:
            conn = srv.client_ssl_context().wrap_socket(sock, server_hostname=srv.host)
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data
    finally:
        conn.close()


def parse_chunked(data: bytes) -> tuple[dict[str, str], list[bytes]]:
    """The head (lower-case names) and the chunks of a chunked HTTP/1.1 reply."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    chunks: list[bytes] = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return headers, chunks
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


# --------------------------------------------------------------------------------------------
# HTTPS
# --------------------------------------------------------------------------------------------
def test_https_is_served_and_verified_with_the_sandbox_ca(tls_server: SandboxServer) -> None:
    srv = tls_server
    assert srv.tls and srv.url == f"https://127.0.0.1:{srv.port}"
    assert srv.ca_path is not None and Path(srv.ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
    r = requests.get(credit_url(srv), auth=C2M_AUTH, verify=srv.ca_path, timeout=5)
    assert r.status_code == 200 and r.text == CREDIT_XML
    h = httpx.get(credit_url(srv), auth=C2M_AUTH, verify=srv.client_ssl_context())
    assert h.status_code == 200 and h.text == CREDIT_XML
    # The certificate also names localhost (and ::1).
    r = requests.get(f"https://localhost:{srv.port}/molpro/credit", auth=C2M_AUTH, verify=srv.ca_path, timeout=5)
    assert r.status_code == 200
    # Clients refuse it without the CA.
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(credit_url(srv), auth=C2M_AUTH, timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(credit_url(srv), auth=C2M_AUTH)
    # Plain HTTP on the TLS port is not answered as HTTP.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(credit_url(srv).replace("https://", "http://"), auth=C2M_AUTH, timeout=5)


async def test_https_with_the_async_client(tls_server: SandboxServer) -> None:
    async with httpx.AsyncClient(verify=tls_server.client_ssl_context()) as client:
        r = await client.get(credit_url(tls_server), auth=C2M_AUTH)
        assert r.status_code == 200 and r.text == CREDIT_XML
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(credit_url(tls_server), auth=C2M_AUTH)


def test_one_ca_per_process_and_plain_servers_have_none(
    tls_server: SandboxServer, http_server: SandboxServer, tmp_path: Path
) -> None:
    assert http_server.ca_path is None and not http_server.tls
    assert http_server.url.startswith("http://")
    with pytest.raises(RuntimeError):
        http_server.client_ssl_context()
    with SandboxServer(SandboxState(), tls=True) as other:
        assert other.ca_path == tls_server.ca_path and other.port != tls_server.port
        assert requests.get(credit_url(other), auth=C2M_AUTH, verify=other.ca_path, timeout=5).status_code == 200


def test_stop_is_quick_and_quiet_with_idle_pooled_tls_connections(caplog: pytest.LogCaptureFixture) -> None:
    """An idle pooled client never answers the TLS close_notify: stop() must not wait for it."""
    caplog.set_level(logging.INFO)
    srv = SandboxServer(SandboxState(), tls=True).start()
    with requests.Session() as session, httpx.Client(verify=srv.client_ssl_context()) as client:
        assert session.get(credit_url(srv), auth=C2M_AUTH, verify=srv.ca_path, timeout=5).status_code == 200
        assert client.get(credit_url(srv), auth=C2M_AUTH).status_code == 200
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 0.9
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []


def test_the_certificate_names_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = SandboxServer(host="::1", tls=True).start()
    except OSError:
        pytest.skip("cannot bind ::1")
    try:
        assert srv.url == f"https://[::1]:{srv.port}"
        assert requests.get(credit_url(srv), auth=C2M_AUTH, verify=srv.ca_path, timeout=5).status_code == 200
    finally:
        srv.stop()


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("br", None),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate", "gzip"),
        ("deflate, gzip", "gzip"),
        ("deflate, gzip;q=0.5", "deflate"),
        ("gzip;q=0.4, deflate;q=0.9", "deflate"),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip;q=0, deflate;q=0", None),
        ("GZIP;Q=0.1", "gzip"),
        ("*", "gzip"),
        ("*;q=0.5, gzip;q=0", "deflate"),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip"),
        ("gzip;q=nan, deflate;q=2", None),
        ("gzip;q=abc", None),
    ],
)
def test_accept_encoding_negotiation(accept: str | None, coding: str | None) -> None:
    assert choose_coding(accept) == coding


_Q = st.sampled_from(["", ";q=0", ";q=0.001", ";q=0.5", ";q=0.50", ";q=1", ";q=1.0"])


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from(["gzip", "deflate", "br", "identity", "*"]), _Q), max_size=5))
def test_negotiation_picks_the_highest_q_with_gzip_on_a_tie(items: list[tuple[str, str]]) -> None:
    header = ", ".join(name + q for name, q in items)
    weights = {name: float(q.removeprefix(";q=")) if q else 1.0 for name, q in items}  # last one wins
    star = weights.get("*", 0.0)
    gzip_q, deflate_q = weights.get("gzip", star), weights.get("deflate", star)
    expected = None if max(gzip_q, deflate_q) == 0 else ("gzip" if gzip_q >= deflate_q else "deflate")
    assert choose_coding(header) == expected


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_replies_are_compressed_as_asked_and_decoded_by_clients(server: SandboxServer, coding: str) -> None:
    headers = {"Accept-Encoding": coding}
    r = requests.get(credit_url(server), auth=C2M_AUTH, headers=headers, verify=verify(server), timeout=5)
    assert r.status_code == 200 and r.text == CREDIT_XML
    assert r.headers["Content-Encoding"] == coding and r.headers["Vary"] == "Accept-Encoding"
    # What travelled really is that coding (deflate: zlib-wrapped, RFC 1950).
    r = requests.get(credit_url(server), auth=C2M_AUTH, headers=headers, verify=verify(server), timeout=5, stream=True)
    wire = r.raw.read(decode_content=False)
    decoded = gzip.decompress(wire) if coding == "gzip" else zlib.decompress(wire)
    assert decoded.decode() == CREDIT_XML and wire != decoded
    with httpx.Client(verify=httpx_verify(server), headers=headers) as client:
        h = client.get(credit_url(server), auth=C2M_AUTH)
        assert h.headers["content-encoding"] == coding and h.text == CREDIT_XML


async def test_async_client_decodes_compressed_replies(server: SandboxServer) -> None:
    async with httpx.AsyncClient(verify=httpx_verify(server)) as client:
        for coding in ("gzip", "deflate"):
            r = await client.get(credit_url(server), auth=C2M_AUTH, headers={"Accept-Encoding": coding})
            assert r.headers["content-encoding"] == coding and r.text == CREDIT_XML
        token = get_token(server)
        r = await client.get(balance_url(server), headers={"Authorization": f"Bearer {token}"})
        assert r.headers["content-encoding"] == "gzip"  # httpx's default Accept-Encoding
        assert json.loads(r.text, parse_float=Decimal)["accounts"][0]["availableBalance"] == Decimal("12.50")


def test_small_json_and_control_replies_are_compressed_too(server: SandboxServer) -> None:
    r = requests.post(
        f"{server.url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, verify=verify(server)
    )
    assert r.headers["Content-Encoding"] == "gzip" and r.json()["tokenType"] == "BearerToken"
    r = requests.get(f"{server.url}/_sandbox/settings", verify=verify(server), timeout=5)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.json() == {
        "token_ttl": 35999,
        "c2m_purchase_reply": "full",
        "pb_duplicate_transaction": "replay",
        "settle_seconds": 0,
        "compress": True,
        "chunked": True,
    }
    r = requests.get(credit_url(server), verify=verify(server), timeout=5)  # 401 HTML
    assert r.status_code == 401 and r.headers["Content-Encoding"] == "gzip" and "<html>" in r.text


def test_identity_when_not_asked_or_when_compress_is_off(server: SandboxServer) -> None:
    for accept in ("identity", "br", "gzip;q=0"):
        r = requests.get(
            credit_url(server), auth=C2M_AUTH, headers={"Accept-Encoding": accept}, verify=verify(server), timeout=5
        )
        assert "Content-Encoding" not in r.headers and r.text == CREDIT_XML
        assert r.headers["Vary"] == "Accept-Encoding"  # the reply depends on it, as behind a CDN
    h = httpx.get(
        credit_url(server), auth=C2M_AUTH, headers={"Accept-Encoding": "identity"}, verify=httpx_verify(server)
    )
    assert "content-encoding" not in h.headers and h.text == CREDIT_XML
    # Turned off through the control API; reset turns it back on.
    r = requests.post(f"{server.url}/_sandbox/settings", json={"compress": False}, verify=verify(server), timeout=5)
    assert r.json()["compress"] is False and "Content-Encoding" not in r.headers
    assert server.state.compress is False and server.state.settings()["compress"] is False
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5)
    assert "Content-Encoding" not in r.headers and "Vary" not in r.headers and r.text == CREDIT_XML
    h = httpx.get(credit_url(server), auth=C2M_AUTH, verify=httpx_verify(server))
    assert "content-encoding" not in h.headers and h.text == CREDIT_XML
    server.state.reset()
    assert server.state.compress is True


def test_empty_bodies_are_not_compressed(server: SandboxServer) -> None:
    server.state.inject_fault("c2m_credit", status=200, body="")
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5)
    assert r.status_code == 200 and r.content == b"" and "Content-Encoding" not in r.headers


# --------------------------------------------------------------------------------------------
# Chunked bodies
# --------------------------------------------------------------------------------------------
def test_replies_are_chunked_in_several_pieces(server: SandboxServer) -> None:
    request = (
        f"GET /molpro/credit HTTP/1.1\r\nHost: {server.host}\r\nAccept-Encoding: identity\r\n"
        "Authorization: Basic ZGVtby11c2VyOmRlbW8tcGFzcy1DMk0=\r\nConnection: close\r\n\r\n"
    ).encode()
    headers, chunks = parse_chunked(raw_exchange(server, request))
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert len(chunks) == 3 and all(chunks)
    assert b"".join(chunks).decode() == CREDIT_XML
    # Compressed and chunked together.
    headers, chunks = parse_chunked(raw_exchange(server, request.replace(b"identity", b"gzip")))
    assert headers["content-encoding"] == "gzip" and len(chunks) >= 2
    assert gzip.decompress(b"".join(chunks)).decode() == CREDIT_XML


def test_chunked_replies_with_requests_and_httpx(server: SandboxServer) -> None:
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5)
    assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    assert r.text == CREDIT_XML
    with httpx.Client(verify=httpx_verify(server)) as client:
        h = client.get(credit_url(server), auth=C2M_AUTH, headers={"Accept-Encoding": "identity"})
        assert h.headers["transfer-encoding"] == "chunked" and "content-length" not in h.headers
        assert h.text == CREDIT_XML
        with client.stream("GET", credit_url(server), auth=C2M_AUTH, headers={"Accept-Encoding": "identity"}) as s:
            pieces = list(s.iter_raw())
        assert b"".join(pieces).decode() == CREDIT_XML


def test_chunked_off_sends_content_length(server: SandboxServer) -> None:
    server.state.update_settings({"chunked": False})
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5, stream=True)
    wire = r.raw.read(decode_content=False)
    assert "Transfer-Encoding" not in r.headers and int(r.headers["Content-Length"]) == len(wire)
    assert r.headers["Content-Encoding"] == "gzip" and gzip.decompress(wire).decode() == CREDIT_XML
    server.state.update_settings({"compress": False})
    h = httpx.get(credit_url(server), auth=C2M_AUTH, verify=httpx_verify(server))
    assert h.headers["content-length"] == str(len(CREDIT_XML)) and h.text == CREDIT_XML


def test_http10_requests_get_no_chunks(http_server: SandboxServer) -> None:
    http_server.state.reset()
    request = (
        b"GET /molpro/credit HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n"
        b"Authorization: Basic ZGVtby11c2VyOmRlbW8tcGFzcy1DMk0=\r\n\r\n"
    )
    head, _, body = raw_exchange(http_server, request).partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and f"content-length: {len(CREDIT_XML)}".encode() in head.lower()
    assert body.decode() == CREDIT_XML


# --------------------------------------------------------------------------------------------
# Wire faults
# --------------------------------------------------------------------------------------------
#: What each client raises, by (wire fault, TLS?).
REQUESTS_ERRORS: dict[tuple[str, bool], type[BaseException]] = {
    ("tls_alert", True): requests.exceptions.SSLError,
    ("corrupt_record", True): requests.exceptions.SSLError,
    ("tls_alert", False): requests.exceptions.ConnectionError,  # garbage status line
    ("corrupt_record", False): requests.exceptions.ConnectionError,
    ("reset", True): requests.exceptions.ConnectionError,
    ("reset", False): requests.exceptions.ConnectionError,
    ("cut_body", True): requests.exceptions.ChunkedEncodingError,
    ("cut_body", False): requests.exceptions.ChunkedEncodingError,
}
HTTPX_ERRORS: dict[tuple[str, bool], tuple[type[BaseException], ...]] = {
    ("tls_alert", True): (httpx.ReadError,),
    ("corrupt_record", True): (httpx.ReadError,),
    ("tls_alert", False): (httpx.RemoteProtocolError,),
    ("corrupt_record", False): (httpx.RemoteProtocolError,),
    ("reset", True): (httpx.ReadError, httpx.RemoteProtocolError),
    ("reset", False): (httpx.ReadError, httpx.RemoteProtocolError),
    ("cut_body", True): (httpx.RemoteProtocolError,),
    ("cut_body", False): (httpx.RemoteProtocolError,),
}
#: httpx's async client (anyio) lets a TLS record error through as a bare ssl.SSLError.
ASYNC_ERRORS: dict[tuple[str, bool], tuple[type[BaseException], ...]] = {
    **HTTPX_ERRORS,
    ("tls_alert", True): (ssl.SSLError, httpx.ReadError),
    ("corrupt_record", True): (ssl.SSLError, httpx.ReadError),
}
BREAKING: list[WireFault] = ["tls_alert", "corrupt_record", "reset", "cut_body"]


def _tls_message_check(exc: BaseException, wire: str, tls: bool) -> None:
    if tls and wire in ("tls_alert", "corrupt_record"):
        text = str(exc).lower()
        assert "ssl" in text and "record" in text, text


@pytest.mark.parametrize("wire", BREAKING)
def test_wire_faults_with_requests_after_the_purchase(server: SandboxServer, wire: WireFault) -> None:
    server.state.inject_fault("c2m_purchase", wire=wire, apply=True)
    with pytest.raises(REQUESTS_ERRORS[(wire, server.tls)]) as caught:
        requests.post(purchase_url(server), auth=C2M_AUTH, data=BILLING, verify=verify(server), timeout=5)
    _tls_message_check(caught.value, wire, server.tls)
    assert len(server.state.purchases) == 1 and server.state.c2m_balance() == Decimal("15.00")
    # The next call (new connection) is fine.
    assert requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5).status_code == 200


@pytest.mark.parametrize("wire", BREAKING)
def test_wire_faults_with_httpx_after_the_refill(server: SandboxServer, wire: WireFault) -> None:
    token = get_token(server)
    server.state.inject_fault("pb_fund", wire=wire, apply=True)
    headers = {"Authorization": f"Bearer {token}", "X-PB-TransactionId": f"w-{wire}"}
    with httpx.Client(verify=httpx_verify(server), timeout=5) as client:
        with pytest.raises(HTTPX_ERRORS[(wire, server.tls)]) as caught:
            client.post(fund_url(server), headers=headers, json={"amount": 25, "currencyCode": "USD"})
        _tls_message_check(caught.value, wire, server.tls)
        assert [r.amount for r in server.state.refills] == [Decimal("25.00")]
        assert server.state.pb_balance() == Decimal("37.50")
        # The same client goes on (new connection); the retry is replayed, not charged twice.
        r = client.post(fund_url(server), headers=headers, json={"amount": 25, "currencyCode": "USD"})
        assert r.status_code == 200 and len(server.state.refills) == 1


@pytest.mark.parametrize("wire", BREAKING)
async def test_wire_faults_with_the_async_client(server: SandboxServer, wire: WireFault) -> None:
    server.state.inject_fault("c2m_purchase", wire=wire, apply=True)
    async with httpx.AsyncClient(verify=httpx_verify(server), timeout=5) as client:
        with pytest.raises(ASYNC_ERRORS[(wire, server.tls)]) as caught:
            await client.post(purchase_url(server), auth=C2M_AUTH, data=BILLING)
        _tls_message_check(caught.value, wire, server.tls)
        assert len(server.state.purchases) == 1
        assert (await client.get(credit_url(server), auth=C2M_AUTH)).status_code == 200


@pytest.mark.parametrize("wire", BREAKING)
def test_wire_faults_without_apply_do_not_charge(tls_server: SandboxServer, wire: WireFault) -> None:
    tls_server.state.inject_fault("c2m_purchase", wire=wire)
    with pytest.raises(REQUESTS_ERRORS[(wire, True)]):
        requests.post(purchase_url(tls_server), auth=C2M_AUTH, data=BILLING, verify=tls_server.ca_path, timeout=5)
    assert tls_server.state.purchases == [] and tls_server.state.c2m_balance() == Decimal("5.00")
    assert tls_server.state.request_count("c2m_purchase") == 1


def test_reset_is_a_tcp_rst(http_server: SandboxServer) -> None:
    http_server.state.reset()
    http_server.state.inject_fault("c2m_credit", wire="reset")
    with pytest.raises(ConnectionResetError):
        raw_exchange(
            http_server,
            b"GET /molpro/credit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Basic ZGVtby11c2VyOmRlbW8tcGFzcy1DMk0=\r\n\r\n",
        )


def test_tls_alert_bytes_on_plain_http(http_server: SandboxServer) -> None:
    http_server.state.reset()
    http_server.state.inject_fault("c2m_credit", wire="tls_alert")
    data = raw_exchange(http_server, b"GET /molpro/credit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert data == bytes.fromhex("15030300020250")
    http_server.state.inject_fault("c2m_credit", wire="corrupt_record")
    data = raw_exchange(http_server, b"GET /molpro/credit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert data[:3] == b"\x17\x03\x03" and int.from_bytes(data[3:5], "big") == len(data) - 5 > 0


def test_cut_body_with_content_length_and_status(server: SandboxServer) -> None:
    server.state.update_settings({"chunked": False})
    server.state.inject_fault("c2m_credit", wire="cut_body", times=2)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5)
    with pytest.raises(httpx.RemoteProtocolError, match="expected"):
        httpx.get(credit_url(server), auth=C2M_AUTH, verify=httpx_verify(server))
    server.state.update_settings({"chunked": True})
    server.state.inject_fault("c2m_credit", wire="cut_body", status=503)
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=5, stream=True)
    assert r.status_code == 503 and r.headers["Transfer-Encoding"] == "chunked"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r.content  # noqa: B018


def test_drop_still_works_over_tls_compressed_and_chunked(tls_server: SandboxServer) -> None:
    tls_server.state.inject_fault("c2m_purchase", drop=True, apply=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(purchase_url(tls_server), auth=C2M_AUTH, data=BILLING, verify=tls_server.ca_path, timeout=5)
    assert len(tls_server.state.purchases) == 1


def test_wire_faults_leave_no_server_errors_in_the_log(
    tls_server: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for wire in (*BREAKING, "oversize"):
        tls_server.state.inject_fault("c2m_credit", wire=wire)
        with pytest.raises(requests.exceptions.RequestException) if wire != "oversize" else _no_error():
            requests.get(credit_url(tls_server), auth=C2M_AUTH, verify=tls_server.ca_path, timeout=5)
    tls_server.state.inject_fault("c2m_credit", drop=True)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(credit_url(tls_server), auth=C2M_AUTH, verify=tls_server.ca_path, timeout=5)
    time.sleep(0.3)  # the server thread logs after the client saw the break
    noisy = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.split(".")[0] in ("uvicorn", "asyncio")
    ]
    assert noisy == [], [r.getMessage() for r in noisy]


class _no_error:  # reads like pytest.raises
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------------------------
# Oversize
# --------------------------------------------------------------------------------------------
def test_oversize_bodies_are_valid_looking_and_over_a_mib(server: SandboxServer) -> None:
    server.state.inject_fault("c2m_credit", wire="oversize", apply=True)
    r = requests.get(credit_url(server), auth=C2M_AUTH, verify=verify(server), timeout=10, stream=True)
    wire = r.raw.read(decode_content=False)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    assert len(wire) > MiB  # even compressed
    text = gzip.decompress(wire).decode()
    assert len(text) > 1.5 * MiB and text.startswith(CREDIT_XML)
    root = ET.fromstring(text.encode())  # the padding is a comment after the document
    assert root.find("balance") is not None and root.find("balance").text == "5.0"  # type: ignore[union-attr]

    token = get_token(server)
    server.state.inject_fault("pb_fund", wire="oversize", apply=True)
    with httpx.Client(verify=httpx_verify(server), timeout=10) as client:
        h = client.post(
            fund_url(server),
            headers={"Authorization": f"Bearer {token}", "X-PB-TransactionId": "big"},
            json={"amount": 20, "currencyCode": "USD"},
        )
    assert h.status_code == 200 and len(h.content) > 1.5 * MiB
    body = h.json()
    assert body["amount"] == 20 and body["currencyCode"] == "USD" and len(body["padding"]) > MiB
    assert [r.amount for r in server.state.refills] == [Decimal("20.00")]


def test_oversize_without_apply_is_a_padding_document_and_charges_nothing(tls_server: SandboxServer) -> None:
    tls_server.state.inject_fault("c2m_purchase", wire="oversize")
    tls_server.state.update_settings({"compress": False, "chunked": False})
    r = requests.post(purchase_url(tls_server), auth=C2M_AUTH, data=BILLING, verify=tls_server.ca_path, timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) > 1.5 * MiB
    assert ET.fromstring(r.content).tag == "padding"
    assert tls_server.state.purchases == []
    tls_server.state.inject_fault("pb_balance", wire="oversize", status=503)
    token = get_token(tls_server)
    r = requests.get(
        balance_url(tls_server), headers={"Authorization": f"Bearer {token}"}, verify=tls_server.ca_path, timeout=10
    )
    assert r.status_code == 503 and len(r.content) > MiB and "padding" in r.json()


# --------------------------------------------------------------------------------------------
# Trickle
# --------------------------------------------------------------------------------------------
def test_trickle_outlasts_a_read_timeout(tls_server: SandboxServer) -> None:
    """Per-read timeouts of 2 s never fire against a byte every 0.5 s: only an overall deadline helps.

    requests, httpx and httpx's async client run at once (one trickle each), 3 s of budget in all.
    """
    srv = tls_server
    srv.state.inject_fault("c2m_credit", wire="trickle", trickle_interval=0.5, times=3)
    budget = 3.0
    results: dict[str, tuple[float, int, bool]] = {}

    def with_requests() -> None:
        started = time.monotonic()
        got, done = 0, True
        with requests.get(credit_url(srv), auth=C2M_AUTH, verify=srv.ca_path, timeout=(2, 2), stream=True) as r:
            for piece in r.raw.stream(1, decode_content=False):  # wire bytes: gzip needs several to decode one
                got += len(piece)
                if time.monotonic() - started > budget:
                    done = False
                    break
        results["requests"] = (time.monotonic() - started, got, done)

    def with_httpx() -> None:
        started = time.monotonic()
        got, done = 0, True
        with (
            httpx.Client(verify=srv.client_ssl_context(), timeout=httpx.Timeout(2.0)) as client,
            client.stream("GET", credit_url(srv), auth=C2M_AUTH) as r,
        ):
            for piece in r.iter_raw():
                got += len(piece)
                if time.monotonic() - started > budget:
                    done = False
                    break
        results["httpx"] = (time.monotonic() - started, got, done)

    async def async_httpx() -> None:
        started = time.monotonic()
        got, done = 0, True
        async with (
            httpx.AsyncClient(verify=srv.client_ssl_context(), timeout=httpx.Timeout(2.0)) as client,
            client.stream("GET", credit_url(srv), auth=C2M_AUTH) as r,
        ):
            async for piece in r.aiter_raw():
                got += len(piece)
                if time.monotonic() - started > budget:
                    done = False
                    break
        results["async httpx"] = (time.monotonic() - started, got, done)

    threads = [
        threading.Thread(target=with_requests),
        threading.Thread(target=with_httpx),
        threading.Thread(target=lambda: asyncio.run(async_httpx())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert set(results) == {"requests", "httpx", "async httpx"}, results
    for client, (elapsed, got, done) in results.items():
        # Still receiving, no ReadTimeout, well past the 2 s read timeout, far from the end.
        assert not done and elapsed > 2.5 and 3 <= got <= 10, (client, elapsed, got)
    assert srv.state.request_count("c2m_credit") == 3


def test_trickle_sends_the_whole_normal_reply_in_the_end(server: SandboxServer) -> None:
    server.state.inject_fault("c2m_purchase", wire="trickle", trickle_interval=0.002, apply=True)
    started = time.monotonic()
    r = requests.post(
        purchase_url(server),
        auth=C2M_AUTH,
        data=BILLING,
        headers={"Accept-Encoding": "identity"},
        verify=verify(server),
        timeout=10,
    )
    assert r.status_code == 200 and "<status>0</status>" in r.text
    assert time.monotonic() - started >= len(r.content) * 0.002
    assert len(server.state.purchases) == 1
    # httpx, compressed, no apply (the handler still runs: a slow normal reply).
    server.state.inject_fault("c2m_credit", wire="trickle", trickle_interval=0.002)
    h = httpx.get(credit_url(server), auth=C2M_AUTH, verify=httpx_verify(server), timeout=10)
    assert h.headers["content-encoding"] == "gzip" and h.text == CREDIT_XML.replace("5.0", "15.0")


def test_trickle_stops_promptly_when_the_server_stops() -> None:
    srv = SandboxServer(SandboxState(), tls=True).start()
    srv.state.inject_fault("c2m_credit", wire="trickle", trickle_interval=5)
    r = requests.get(credit_url(srv), auth=C2M_AUTH, verify=srv.ca_path, timeout=10, stream=True)
    assert r.status_code == 200
    stopping = time.monotonic()
    srv.stop()
    assert time.monotonic() - stopping < 1.5 and not srv.running
    with pytest.raises(requests.exceptions.RequestException):
        r.content  # noqa: B018
    r.close()


# --------------------------------------------------------------------------------------------
# Controls, validation, seeds, CLI
# --------------------------------------------------------------------------------------------
def test_wire_faults_through_the_control_api(http_server: SandboxServer) -> None:
    srv = http_server
    srv.state.reset()
    r = requests.post(
        f"{srv.url}/_sandbox/faults",
        json={"endpoint": "c2m_credit", "wire": "trickle", "trickle_interval": 0.25, "apply": True},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.json()["fault"]["wire"] == "trickle" and r.json()["fault"]["trickle_interval"] == "0.25"
    assert srv.state.pending_faults()["c2m_credit"] == [Fault(wire="trickle", trickle_interval=0.25, apply=True)]
    listed = requests.get(f"{srv.url}/_sandbox/faults", timeout=5).json()["c2m_credit"]
    assert Fault.from_mapping(listed[0]) == Fault(wire="trickle", trickle_interval=0.25, apply=True)
    snapshot = requests.get(f"{srv.url}/_sandbox/state", timeout=5).json()
    assert snapshot["wire"] == {"compress": True, "chunked": True}
    assert snapshot["faults"]["c2m_credit"][0]["wire"] == "trickle"
    requests.delete(f"{srv.url}/_sandbox/faults", timeout=5)
    for body in (
        {"endpoint": "c2m_credit", "wire": "smoke"},
        {"endpoint": "c2m_credit", "wire": "trickle", "trickle_interval": 0},
        {"endpoint": "c2m_credit", "wire": "trickle", "trickle_interval": "soon"},
        {"endpoint": "c2m_credit", "wire": "reset", "drop": True},
    ):
        r = requests.post(f"{srv.url}/_sandbox/faults", json=body, timeout=5)
        assert r.status_code == 400 and "error" in r.json(), body
    settings_bodies: list[dict[str, object]] = [{"compress": "yes"}, {"chunked": 1}, {"gzip": True}]
    for body in settings_bodies:
        r = requests.post(f"{srv.url}/_sandbox/settings", json=body, timeout=5)
        assert r.status_code == 400 and "error" in r.json(), body
    r = requests.post(f"{srv.url}/_sandbox/settings", json={"chunked": False, "compress": False}, timeout=5)
    assert r.json()["chunked"] is False and r.headers["Content-Length"] == str(len(r.content))
    srv.state.reset()


def test_fault_fields_and_validation() -> None:
    assert WIRE_FAULTS == ("tls_alert", "corrupt_record", "reset", "cut_body", "oversize", "trickle")
    assert Fault().wire is None and Fault().trickle_interval == 0.5
    for wire in WIRE_FAULTS:
        fault = Fault(wire=wire)
        assert fault.replaces_reply is (wire != "trickle")
        assert Fault.from_mapping(fault.to_mapping()) == fault
    assert Fault(trickle_interval=Decimal("0.1")).trickle_interval == 0.1  # type: ignore[arg-type]
    for bad in (
        {"wire": "nope"},
        {"trickle_interval": 0},
        {"trickle_interval": -1},
        {"trickle_interval": float("inf")},
        {"trickle_interval": True},
        {"wire": "cut_body", "drop": True},
        {"delay": float("nan")},
    ):
        with pytest.raises(InvalidSettingError):
            Fault(**bad)
    state = SandboxState()
    fault = state.inject_fault("pb_fund", wire="reset", apply=True)
    assert fault == Fault(wire="reset", apply=True)
    with pytest.raises(InvalidSettingError):
        state.inject_fault("pb_fund", wire="tcp")  # type: ignore[arg-type]


def test_wire_settings_in_seeds_and_state() -> None:
    state = SandboxState()
    assert state.wire_settings() == {"compress": True, "chunked": True}
    state.compress = False
    state.chunked = False
    assert state.settings()["compress"] is False and state.snapshot()["wire"] == {"compress": False, "chunked": False}
    assert set(state.snapshot()["settings"]) == {
        "token_ttl",
        "c2m_purchase_reply",
        "pb_duplicate_transaction",
        "settle_seconds",
    }
    state.reset()
    assert state.wire_settings() == {"compress": True, "chunked": True}
    seed = Seed.from_mapping({"include_defaults": True, "compress": False})
    assert seed.compress is False and seed.chunked is True and seed.to_mapping()["compress"] is False
    quiet = SandboxState(seed)
    quiet.compress = True
    quiet.reset()
    assert quiet.compress is False
    with pytest.raises(InvalidSettingError):
        Seed.from_mapping({"chunked": "no"})
    with pytest.raises(InvalidSettingError):
        state.update_settings({"compress": None})


def test_cli_ca_dir_needs_tls(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--port", "0", "--ca-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_console_script_with_tls(tmp_path: Path) -> None:
    ca_dir = tmp_path / "trust"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_postage.sandbox",
            "--port",
            "0",
            "--tls",
            "--ca-dir",
            str(ca_dir),
            "--no-compress",
            "--no-chunked",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(20, proc.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("postage-sandbox listening on https://127.0.0.1:"), line
        base = line.removeprefix("postage-sandbox listening on ")
        ca_line = proc.stdout.readline().strip()
        assert ca_line == f"postage-sandbox CA certificate: {ca_dir / 'ca.pem'}", ca_line
        r = requests.get(f"{base}/molpro/credit", auth=C2M_AUTH, verify=str(ca_dir / "ca.pem"), timeout=5)
        assert r.status_code == 200 and r.text == CREDIT_XML
        assert "Content-Encoding" not in r.headers and r.headers["Content-Length"] == str(len(CREDIT_XML))
        # --no-compress is the seed's choice: a reset keeps it.
        requests.post(f"{base}/_sandbox/reset", verify=str(ca_dir / "ca.pem"), timeout=5)
        settings = requests.get(f"{base}/_sandbox/settings", verify=str(ca_dir / "ca.pem"), timeout=5).json()
        assert settings["compress"] is False and settings["chunked"] is False
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert (ca_dir / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_helpers_parse_what_they_should() -> None:
    headers, chunks = parse_chunked(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"
    )
    assert headers == {"transfer-encoding": "chunked"} and chunks == [b"abc", b"d"]
