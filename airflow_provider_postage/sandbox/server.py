"""Run the sandbox application with uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import create_app, install_drop_log_filter
from .state import SandboxState

__all__ = ["SandboxServer"]


class SandboxServer:
    """The sandbox served on ``host:port`` from a daemon thread.

    ``port=0`` picks a free ephemeral port. :meth:`start` binds the socket itself (so :attr:`port`
    and :attr:`url` are known) and returns once uvicorn serves it. Use as a context manager or call
    :meth:`stop`.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
    ) -> None:
        self.state = state if state is not None else SandboxState()
        self.host = host
        self._requested_port = port
        self._log_level = log_level
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
        return f"http://{host}:{self.port}"

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
            http="h11",
            loop="asyncio",
            ws="none",
            proxy_headers=False,
            server_header=False,
            access_log=False,
            timeout_graceful_shutdown=1,
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
