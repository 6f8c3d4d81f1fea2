"""Run the sandbox application with uvicorn in a background thread, over HTTP or HTTPS.

The server speaks like a real one behind TLS terminators, gateways and CDNs:

* ``tls=True``: HTTPS with a certificate for ``127.0.0.1``, ``localhost`` and ``::1`` issued by a
  local CA (one per process, made with ``trustme``); :attr:`SandboxServer.ca_path` is the CA's PEM
  file for clients (``requests``: ``verify=server.ca_path``; ``httpx``:
  ``verify=server.client_ssl_context()``). Without it clients refuse the certificate.
* setting ``compress`` (default on): bodies gzip/deflate-compressed when ``Accept-Encoding`` allows;
* setting ``chunked`` (default on): ``Transfer-Encoding: chunked`` in several pieces;
* the wire faults of :class:`.faults.Fault` (``tls_alert``, ``corrupt_record``, ``reset``,
  ``cut_body``, ``oversize``, ``trickle``): the raw-socket ones reach the TCP socket under the TLS
  layer through the HTTP protocol class installed here, which records each connection's transport
  by peer address (:class:`.wire.ConnectionRegistry`).

Settings: :meth:`.state.SandboxState.update_settings` or ``POST /_sandbox/settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app, install_drop_log_filter
from .state import SandboxState
from .wire import ConnectionRegistry

__all__ = ["SandboxServer"]

#: Seconds a connection gets to close cleanly once the server stops before it is aborted.
_SHUTDOWN_GRACE = 0.2


def _protocol_class(registry: ConnectionRegistry) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, recording each connection's transport in ``registry`` while it is open."""

    class SandboxH11Protocol(H11Protocol):
        _gone = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                registry.add(self.client, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self._gone = True
            try:
                super().connection_lost(exc)
            finally:
                if self.client is not None:
                    registry.discard(self.client, self.transport)

        def shutdown(self) -> None:
            # A TLS close waits for the peer's close_notify (asyncio: up to 30 s), which an idle pooled
            # client never sends: past a short grace, abort, so that stop() stays quick and quiet.
            super().shutdown()
            self.loop.call_later(_SHUTDOWN_GRACE, self._abort_if_open)

        def _abort_if_open(self) -> None:
            if not self._gone and self.transport is not None:
                self.transport.abort()

    return SandboxH11Protocol


class SandboxServer:
    """The sandbox served on ``host:port`` from a daemon thread.

    ``port=0`` picks a free ephemeral port. :meth:`start` binds the socket itself (so :attr:`port`
    and :attr:`url` are known) and returns once uvicorn serves it. Use as a context manager or call
    :meth:`stop`. With ``tls=True`` it serves HTTPS (:attr:`url` is ``https://…``, :attr:`ca_path`
    the CA to trust); see the module docstring for the wire behaviour.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        tls: bool = False,
    ) -> None:
        self.state = state if state is not None else SandboxState()
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._tls = bool(tls)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping: threading.Event | None = None

    # ------------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    @property
    def tls(self) -> bool:
        """True when the server speaks HTTPS."""
        return self._tls

    @property
    def ca_path(self) -> str | None:
        """Path of a PEM file with the CA certificate that signed the server's (None for plain HTTP).

        The same CA serves every TLS sandbox of the process; the file lives until the process exits.
        """
        if not self._tls:
            return None
        from .tls import tls_material

        return str(tls_material().ca_path)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting :attr:`ca_path` (for ``httpx``'s ``verify=``)."""
        if not self._tls:
            raise RuntimeError("the sandbox server does not use TLS")
        from .tls import client_ssl_context

        return client_ssl_context()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------ lifecycle
    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Bind, start serving in a background thread and return once connections are served."""
        if self._thread is not None:
            raise RuntimeError("the sandbox server was already started")
        tls_options: dict[str, Any] = {}
        if self._tls:
            from .tls import tls_material

            material = tls_material()  # before binding: a missing trustme leaves nothing behind
            tls_options = {"ssl_certfile": str(material.cert_path), "ssl_keyfile": str(material.key_path)}
        sock = self._bind()
        self._socket = sock
        self._port = int(sock.getsockname()[1])
        app = create_app(self.state)
        self._stopping = app.state.stopping
        config = uvicorn.Config(
            app,
            log_level=self._log_level,
            log_config=None,
            lifespan="off",
            http=_protocol_class(app.state.connections),
            loop="asyncio",
            ws="none",
            proxy_headers=False,
            server_header=False,
            access_log=False,
            timeout_graceful_shutdown=1,
            **tls_options,
        )
        install_drop_log_filter()
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"postage-sandbox-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError("the sandbox server failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the sandbox server did not start within {timeout} s")
            time.sleep(0.002)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait for the thread (forcing the exit after ``timeout`` seconds)."""
        server, thread = self._server, self._thread
        if self._stopping is not None:
            self._stopping.set()
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else f"{self.host}:{self._requested_port}"
        return f"<SandboxServer {where} {'running' if self.running else 'stopped'}>"
