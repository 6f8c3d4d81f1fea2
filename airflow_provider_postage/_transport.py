"""The only places bytes move: :func:`send` (requests, for hooks) and :func:`asend` (aiohttp, for
triggers). Both send an :class:`HttpRequest` exactly as built, never follow redirects (credentials stay
with the configured host), decode compressed replies, cap the reply size, give every request a total
deadline, and say whether a failed request may have reached the server.

"May have reached the server" is decided by the wire, not by the exception's class: a request counts as
not sent only while no byte of it was written to the connection (name resolution, connection refused,
connect timeout, a TLS handshake refused). requests raises the same ``SSLError`` for a handshake refused
and for a corrupted record after the whole purchase was delivered; only the second may have been charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import heapq
import itertools
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_postage.protocol.errors import PostageTransportError
from airflow_provider_postage.protocol.http import MAX_RESPONSE_BYTES, HttpRequest, HttpResponse

if TYPE_CHECKING:
    import aiohttp
    import requests

#: (connect, read) seconds. No call may hang a worker or the triggerer's loop: each socket operation
#: waits at most that long, and the whole exchange at most their sum (a reply trickling in byte by byte
#: never trips a per-read timeout, so the total deadline is what ends it).
DEFAULT_TIMEOUT = (10.0, 30.0)

#: ``verify``: True (system CAs), False (no verification), or the path of a CA bundle (PEM).
Verify = bool | str


def deadline_of(timeout: tuple[float, float]) -> float:
    """The total seconds one request may take, from the first connect to the last byte of the reply."""
    return float(timeout[0]) + float(timeout[1])


def _where(request: HttpRequest) -> str:
    return f"{request.method} {request.url}"


def _too_large(request: HttpRequest) -> PostageTransportError:
    return PostageTransportError(
        f"{_where(request)}: reply larger than {MAX_RESPONSE_BYTES} bytes, refused", request_sent=True
    )


# --- sync: which bytes left, and a deadline over the whole exchange -------------------------------------


class _Attempt:
    """One request on the wire: whether a byte of it was written, and its socket for the watchdog."""

    __slots__ = ("expired", "finished", "lock", "sock", "wrote")

    def __init__(self) -> None:
        self.wrote = False
        self.expired = False
        self.finished = False
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def expire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.expired = True
            if self.sock is not None:
                # shutdown wakes a blocked recv (close would not); the pool then discards the dead connection
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.lock:
            self.finished = True


_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("postage_attempt", default=None)


class _Watchdog:
    """One daemon thread per process that ends requests past their total deadline (a heap of deadlines,
    woken only when a new one comes first): no thread or timer per request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: _Attempt, deadline: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="postage-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is attempt:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].finished or self._heap[0][0] <= now):
                    _, _, attempt = heapq.heappop(self._heap)
                    attempt.expire()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


def _tracked(base: type) -> type:
    """A urllib3 connection class that records, for the running request, its socket and whether a byte
    of the request was handed to it (every write of http.client goes through ``send``)."""

    class Tracked(base):
        def connect(self) -> None:
            super().connect()
            attempt = _ATTEMPT.get()
            if attempt is not None:
                attempt.sock = self.sock

        def send(self, data: Any) -> None:
            if self.sock is None:  # http.client connects lazily; a refused connect sent nothing
                self.connect()
            attempt = _ATTEMPT.get()
            if attempt is not None:
                attempt.sock = self.sock
                attempt.wrote = True
            super().send(data)

    Tracked.__name__ = Tracked.__qualname__ = f"Tracked{base.__name__}"
    return Tracked


def new_session() -> requests.Session:
    """A requests session for :func:`send`: nothing from the environment (proxies, ``.netrc``), and
    connections that report what was written."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = _tracked(HTTPConnection)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _tracked(HTTPSConnection)

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    session = requests.Session()
    session.trust_env = False
    adapter = Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _sync_failure(request: HttpRequest, error: BaseException, attempt: _Attempt, total: float) -> PostageTransportError:
    import requests

    sent = attempt.wrote
    if attempt.expired:
        why = f"no complete reply within {total:g} s"
    elif isinstance(error, requests.exceptions.SSLError):
        why = "TLS failure after the request was sent" if sent else _handshake_hint()
    elif isinstance(error, requests.ConnectTimeout):
        why = "connect timeout"
    elif isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        why = "read timeout" if sent else "connect timeout"
    elif isinstance(error, requests.exceptions.InvalidHeader) or (isinstance(error, ValueError) and not sent):
        why = f"request refused locally ({type(error).__name__})"
    elif not sent:
        why = "connection refused"
    else:
        why = f"connection lost ({type(error).__name__})"
    return PostageTransportError(f"{_where(request)}: {why}", request_sent=sent)


def _handshake_hint() -> str:
    return (
        "TLS handshake failed: the certificate is not trusted (a private CA goes in the ca_bundle extra), or "
        "the server does not speak TLS (a plain-HTTP local sandbox needs http:// in the host)"
    )


@functools.cache
def _sync_errors() -> tuple[type[BaseException], ...]:
    """What :func:`send` turns into a PostageTransportError (imported only once something fails)."""
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (requests.RequestException, Urllib3Error, OSError, ValueError)


def _prepare(session: requests.Session, request: HttpRequest) -> requests.PreparedRequest:
    """What ``session.request`` would send: the session's headers under the request's, its cookies, its
    hooks; no auth but the request's own header (``trust_env`` is off: no ``.netrc``), no query params.

    Prepared here because ``Session.request`` merges every per-request setting with the session's, and
    requests (2.34) tests each of these mostly empty settings with a runtime-Protocol ``isinstance``
    (~7 µs apiece on Python 3.11): seven of them made up a tenth of a balance read's CPU."""
    import requests
    from requests.structures import CaseInsensitiveDict

    headers = CaseInsensitiveDict(session.headers)
    headers.update(request.headers)
    prepared = requests.PreparedRequest()
    prepared.prepare(
        method=request.method,
        url=request.url,
        headers=headers,
        data=request.body,
        cookies=session.cookies,
        hooks=session.hooks,
    )
    return prepared


def send(
    session: requests.Session,
    request: HttpRequest,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    verify: Verify = True,
) -> HttpResponse:
    """Send ``request`` on a session from :func:`new_session`."""
    attempt = _Attempt()
    token = _ATTEMPT.set(attempt)
    total = deadline_of(timeout)
    _WATCHDOG.watch(attempt, time.monotonic() + total)
    try:
        # The settings Session.request would merge, given as they come out of the merge: the session's
        # proxies and client certificate (none), the request's stream and verify.
        with session.send(
            _prepare(session, request),
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            verify=verify,
            proxies=session.proxies,
            cert=session.cert,
        ) as reply:
            # One capped read of the decoded stream: the replies are small, and a chunk loop costs more
            # than the read itself. Decoded, so a compressed bomb is capped too.
            body = reply.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            if len(body) > MAX_RESPONSE_BYTES:
                raise _too_large(request)
            headers = dict(reply.headers.lower_items())
        if attempt.expired:  # the watchdog cut the reply short: what was read may be a truncated body
            raise PostageTransportError(f"{_where(request)}: no complete reply within {total:g} s", request_sent=True)
        return HttpResponse(reply.status_code, headers, body)
    except PostageTransportError:
        raise
    except _sync_errors() as error:
        raise _sync_failure(request, error, attempt, total) from None
    finally:
        attempt.finish()
        _ATTEMPT.reset(token)


# --- async ----------------------------------------------------------------------------------------------


def _async_failure(request: HttpRequest, error: BaseException, wrote: bool, total: float) -> PostageTransportError:
    """The sync side's wording, and the same rule: sent once the first byte of the request was written."""
    import aiohttp

    if isinstance(error, aiohttp.ServerTimeoutError):  # connect or read; a TimeoutError too, so first
        why = "read timeout" if wrote else "connect timeout"
    elif isinstance(error, asyncio.TimeoutError):  # the total deadline (aiohttp's own timeouts are caught above)
        why = f"no complete reply within {total:g} s"
    elif not wrote and isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError)):
        why = _handshake_hint()
    elif not wrote:
        why = f"not sent ({type(error).__name__})"
    else:
        why = f"connection lost ({type(error).__name__})"
    return PostageTransportError(f"{_where(request)}: {why}", request_sent=wrote)


class _Sent:
    """Per request: whether aiohttp got as far as writing its headers (set just before the first byte
    is handed to the connection; the TLS handshake and the connect are over by then)."""

    __slots__ = ("wrote",)

    def __init__(self) -> None:
        self.wrote = False


async def _on_headers_sent(session: Any, context: Any, params: Any) -> None:
    sent = context.trace_request_ctx
    if sent is not None:
        sent.wrote = True


def new_async_client(verify: Verify) -> aiohttp.ClientSession:
    """An aiohttp session for :func:`asend` (one per event loop and TLS setting: see
    ``_drivers.shared_client``): nothing from the environment, no cookies kept between requests (the
    session is shared by every connection on the loop), at most 100 connections, replies decoded."""
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    trace.freeze()
    if verify is False:
        tls: ssl.SSLContext | bool = False
    elif isinstance(verify, str):
        tls = ssl.create_default_context(cafile=verify)
    else:  # the CAs requests (the hooks' side) trusts, so that a hook and its trigger agree
        import certifi

        tls = ssl.create_default_context(cafile=certifi.where())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, ssl=tls),
        trust_env=False,
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[trace],
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("Content-Type",),  # sent as built: no made-up application/octet-stream
    )
    # aiohttp resends a PUT or GET once, unasked, when a kept-alive connection turns out dead; a request
    # that may move money is never resent behind the retry policy's back (tests/test_transport.py checks
    # the attribute is still there).
    session._retry_connection = False
    return session


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float, read: float) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


async def asend(
    client: aiohttp.ClientSession,
    request: HttpRequest,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> HttpResponse:
    """Send ``request`` on a session from :func:`new_async_client`: what :func:`send` does, on the loop.

    aiohttp rather than httpx, by measurement (issue 11, ``benchmarks/bench_clients.py``: HTTPS, gzip,
    one loop): httpx cost 2 ms of CPU per request with one in flight, 7 ms with 100 and 53 ms with 1,000
    (its pool scans its queue and connections on every request); aiohttp 0.3 to 0.5 ms at each."""
    import aiohttp

    connect, read = timeout
    total = deadline_of(timeout)
    sent = _Sent()

    async def exchange() -> HttpResponse:
        async with client.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body,
            allow_redirects=False,
            timeout=_client_timeout(float(connect), float(read)),
            trace_request_ctx=sent,
        ) as reply:
            body = bytearray()
            async for chunk in reply.content.iter_any():  # decoded (gzip, deflate, ...) as it arrives
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _too_large(request)
            headers: dict[str, str] = {}
            for name, value in reply.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            return HttpResponse(reply.status, headers, bytes(body))

    try:
        return await asyncio.wait_for(exchange(), total)
    except PostageTransportError:
        raise
    except (aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError) as error:
        raise _async_failure(request, error, sent.wrote, total) from None
