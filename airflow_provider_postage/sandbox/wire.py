"""How the sandbox's replies travel: compression, chunked framing and deliberate breaks on the wire.

:class:`WireMiddleware` is the outermost layer of the sandbox application. It buffers each reply
the routes produce, then sends it the way a real server behind TLS terminators, gateways and CDNs
would (settings of :class:`.state.SandboxState`):

* ``compress``: gzip or deflate (zlib) per the request's ``Accept-Encoding``, with
  ``Content-Encoding`` and ``Vary: Accept-Encoding``, for every non-empty body;
* ``chunked``: ``Transfer-Encoding: chunked`` in up to three pieces (HTTP/1.1), no Content-Length;

and carries out the faults a route marked with :data:`DROP_MARKER_HEADER` / :data:`WIRE_MARKER_HEADER`
(see :class:`.faults.Fault`). The raw-socket faults (``tls_alert``, ``corrupt_record``, ``reset``)
reach the TCP socket through a :class:`ConnectionRegistry` that the server's HTTP protocol fills
(:func:`.server.SandboxServer` installs it); the socket writes use ``os.write`` (POSIX).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import logging
import math
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .faults import WIRE_FAULTS

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = [
    "CORRUPT_RECORD_PREFIX",
    "DROP_MARKER_HEADER",
    "OVERSIZE_PADDING",
    "TLS_ALERT_RECORD",
    "WIRE_MARKER_HEADER",
    "ConnectionRegistry",
    "WireMiddleware",
    "choose_coding",
    "install_drop_log_filter",
    "interruptible_sleep",
    "padding_text",
]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

#: Internal response header by which a route asks the middleware to cut the reply short (``drop``).
DROP_MARKER_HEADER = "x-postage-sandbox-drop"
#: Internal response header carrying a wire fault: ``<kind>`` or ``trickle; interval=<seconds>``.
WIRE_MARKER_HEADER = "x-postage-sandbox-wire"

#: A TLS 1.2-framed fatal alert (level 2) ``internal_error`` (80), written in clear by ``tls_alert``.
TLS_ALERT_RECORD = bytes.fromhex("15030300020250")
#: Header of the bogus application-data record written by ``corrupt_record`` (then length and payload).
CORRUPT_RECORD_PREFIX = bytes.fromhex("170303")
_CORRUPT_PAYLOAD = 64
#: Characters of padding that ``oversize`` adds (the body ends up a little above 1.5 MiB).
OVERSIZE_PADDING = 3 * 512 * 1024

_RAW_FAULTS = frozenset({"tls_alert", "corrupt_record", "reset"})
_BODYLESS = frozenset({204, 304})


# --------------------------------------------------------------------------------------------
# Logging: deliberate breaks are not server errors
# --------------------------------------------------------------------------------------------
_BROKEN: ContextVar[bool] = ContextVar("postage_sandbox_broken_reply", default=False)
_QUIET_MESSAGES = ("without completing response", "without starting response")


class _DropLogFilter(logging.Filter):
    """Silence uvicorn's complaints about the incomplete replies that drop and wire faults send on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _BROKEN.get():
            return True
        message = record.getMessage()
        return not any(quiet in message for quiet in _QUIET_MESSAGES)


_DROP_LOG_FILTER = _DropLogFilter()


def install_drop_log_filter() -> None:
    """Attach the filter to uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _DROP_LOG_FILTER not in logger.filters:
        logger.addFilter(_DROP_LOG_FILTER)


# --------------------------------------------------------------------------------------------
# Connections by peer address
# --------------------------------------------------------------------------------------------
@dataclass
class _Connection:
    transport: asyncio.Transport
    lost: asyncio.Event = field(default_factory=asyncio.Event)


class ConnectionRegistry:
    """The open transports of a server by peer address (``scope["client"]``); event-loop thread only."""

    def __init__(self) -> None:
        self._by_peer: dict[tuple[str, int], _Connection] = {}

    def add(self, peer: tuple[str, int], transport: asyncio.Transport) -> None:
        self._by_peer[(peer[0], peer[1])] = _Connection(transport)

    def discard(self, peer: tuple[str, int], transport: asyncio.Transport) -> None:
        key = (peer[0], peer[1])
        entry = self._by_peer.get(key)
        if entry is not None and entry.transport is transport:
            del self._by_peer[key]
            entry.lost.set()

    def get(self, peer: Any) -> _Connection | None:
        if not peer:
            return None
        return self._by_peer.get((str(peer[0]), int(peer[1])))

    def __len__(self) -> int:
        return len(self._by_peer)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
async def interruptible_sleep(delay: float, stopping: threading.Event) -> bool:
    """Sleep ``delay`` seconds in small steps; False (early) as soon as ``stopping`` is set."""
    deadline = time.monotonic() + delay
    while not stopping.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, 0.05))
    return False


def choose_coding(accept_encoding: str | None) -> str | None:
    """``"gzip"``, ``"deflate"`` or None for an ``Accept-Encoding`` value.

    The acceptable coding with the highest q-value wins, gzip on a tie; ``*`` covers codings not
    named; ``q=0`` (or an unreadable q) refuses; ``x-gzip`` counts as gzip.
    """
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        coding = name.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not math.isfinite(weight) or not 0 <= weight <= 1:
                    weight = 0.0
        weights["gzip" if coding == "x-gzip" else coding] = weight
    star = weights.get("*", 0.0)
    best = max(("gzip", "deflate"), key=lambda c: weights.get(c, star))
    return best if weights.get(best, star) > 0 else None


def _encode(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, compresslevel=6, mtime=0)
    return zlib.compress(body, 6)  # "deflate" is zlib-wrapped (RFC 1950), as clients expect


def padding_text(size: int = OVERSIZE_PADDING) -> str:
    """``size`` characters of random base64: valid in a JSON string and an XML comment, hardly compressible."""
    raw = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode("ascii")
    return raw[:size]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _without(headers: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(key, value) for key, value in headers if key.lower() not in names]


def _pieces(body: bytes, count: int = 3) -> list[bytes]:
    """``body`` in up to ``count`` non-empty pieces (none for an empty body)."""
    if not body:
        return []
    size = max(1, -(-len(body) // count))
    return [body[i : i + size] for i in range(0, len(body), size)]


def _parse_wire_marker(value: bytes) -> tuple[str, float]:
    kind, _, params = value.decode("latin-1").partition(";")
    interval = 0.5
    for param in params.split(";"):
        key, _, raw = param.partition("=")
        if key.strip() == "interval":
            with contextlib.suppress(ValueError):
                interval = float(raw)
    return kind.strip(), interval


def _raw_write(sock: Any, data: bytes) -> None:
    """Write ``data`` on the socket itself, under any TLS layer (best effort, non-blocking socket)."""
    fd = sock.fileno()
    view = memoryview(data)
    deadline = time.monotonic() + 1.0
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
            continue
        except OSError:
            return
        view = view[written:]


# --------------------------------------------------------------------------------------------
# The middleware
# --------------------------------------------------------------------------------------------
class WireMiddleware:
    """Send every reply compressed and chunked per the settings; carry out drop and wire faults."""

    def __init__(
        self,
        app: _ASGIApp,
        sandbox: SandboxState,
        registry: ConnectionRegistry,
        stopping: threading.Event,
    ) -> None:
        self.app = app
        self.sandbox = sandbox
        self.registry = registry
        self.stopping = stopping

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: _Message | None = None
        chunks: list[bytes] = []
        complete = False

        async def capture(message: _Message) -> None:
            nonlocal start, complete
            if message["type"] == "http.response.start" and start is None:
                start = message
            elif message["type"] == "http.response.body" and start is not None and not complete:
                chunks.append(bytes(message.get("body", b"")))
                complete = not message.get("more_body", False)
            else:
                await send(message)

        await self.app(scope, receive, capture)
        if start is None:
            return
        if not complete:  # the app gave up mid-body: pass on what it sent, as it did
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            return
        await self._reply(scope, start, b"".join(chunks), send)

    # ------------------------------------------------------------------------ the normal path
    async def _reply(self, scope: _Scope, start: _Message, body: bytes, send: _Send) -> None:
        status = int(start["status"])
        headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
        drop = _header(headers, DROP_MARKER_HEADER.encode()) is not None
        marker = _header(headers, WIRE_MARKER_HEADER.encode())
        headers = _without(headers, DROP_MARKER_HEADER.encode(), WIRE_MARKER_HEADER.encode())
        wire, interval = _parse_wire_marker(marker) if marker is not None else (None, 0.5)
        if wire is not None and wire not in WIRE_FAULTS:
            wire = None
        settings = self.sandbox.wire_settings()
        bodyless = status < 200 or status in _BODYLESS

        if not bodyless and body and settings["compress"] and _header(headers, b"content-encoding") is None:
            vary = _header(headers, b"vary")
            if vary is None:
                headers.append((b"vary", b"Accept-Encoding"))
            elif b"accept-encoding" not in vary.lower():
                headers = [*_without(headers, b"vary"), (b"vary", vary + b", Accept-Encoding")]
            request_headers = [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])]
            accepted = _header(request_headers, b"accept-encoding")
            coding = choose_coding(accepted.decode("latin-1") if accepted is not None else None)
            if coding is not None:
                body = _encode(body, coding)
                headers.append((b"content-encoding", coding.encode()))

        chunked = settings["chunked"] and not bodyless and scope.get("http_version") == "1.1"
        headers = _without(headers, b"content-length")
        if not chunked and not bodyless:
            headers.append((b"content-length", str(len(body)).encode()))
        start = {**start, "headers": headers}

        if drop:
            await self._drop(start, body, send)
        elif wire in _RAW_FAULTS:
            await self._break(scope, wire, start, body, chunked, send)
        elif wire == "cut_body":
            await self._cut(start, body, chunked, send)
        elif wire == "trickle":
            await self._trickle(scope, start, body, interval, send)
        else:
            await send(start)
            pieces = _pieces(body) if chunked else [body]
            for piece in pieces[:-1]:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": pieces[-1] if pieces else b"", "more_body": False})

    # ------------------------------------------------------------------------ faults
    async def _drop(self, start: _Message, body: bytes, send: _Send) -> None:
        """Announce Content-Length = body + 1024, send half the body, end without completing."""
        headers = _without(list(start["headers"]), b"content-length", b"transfer-encoding")
        headers.append((b"content-length", str(len(body) + 1024).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        _BROKEN.set(True)  # uvicorn closes the connection when the app returns

    async def _cut(self, start: _Message, body: bytes, chunked: bool, send: _Send) -> None:
        """Send the head and about half the body, then end without completing (uvicorn closes)."""
        if not chunked and not body:  # a zero Content-Length would be a complete reply
            start = {**start, "headers": _without(list(start["headers"]), b"content-length")}
            start["headers"].append((b"content-length", b"1"))
        await send(start)
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        _BROKEN.set(True)

    async def _trickle(self, scope: _Scope, start: _Message, body: bytes, interval: float, send: _Send) -> None:
        """The head at once, then one body byte every ``interval`` seconds."""
        connection = self.registry.get(scope.get("client"))
        await send(start)
        for index in range(len(body)):
            last = index == len(body) - 1
            await send({"type": "http.response.body", "body": body[index : index + 1], "more_body": not last})
            if last:
                return
            if not await interruptible_sleep(interval, self.stopping) or (
                connection is not None and (connection.lost.is_set() or connection.transport.is_closing())
            ):
                _BROKEN.set(True)  # server stopping or client gone: give up, uvicorn closes
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _break(self, scope: _Scope, kind: str, start: _Message, body: bytes, chunked: bool, send: _Send) -> None:
        """Write a bogus TLS record (or nothing, for ``reset``) under the TLS layer and close."""
        connection = self.registry.get(scope.get("client"))
        transport = connection.transport if connection is not None else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if connection is None or transport is None or sock is None or transport.is_closing():
            await self._cut(start, body, chunked, send)  # not served through the registry: degrade
            return
        _BROKEN.set(True)
        # Let whatever is queued before (a previous reply, TLS session tickets) leave first.
        get_size = getattr(transport, "get_write_buffer_size", None)
        deadline = time.monotonic() + 1.0
        while get_size is not None and get_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if kind == "reset":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "tls_alert":
            _raw_write(sock, TLS_ALERT_RECORD)
        else:
            payload = os.urandom(_CORRUPT_PAYLOAD)
            _raw_write(sock, CORRUPT_RECORD_PREFIX + struct.pack("!H", len(payload)) + payload)
        transport.abort()
        # Return once uvicorn knows the connection is gone, so that it neither answers nor logs.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(connection.lost.wait(), 2.0)
