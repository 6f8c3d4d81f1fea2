"""FastAPI application emulating Click2Mail and Pitney Bowes, plus the ``/_sandbox`` control routes.

:func:`create_app` assembles the routes of each part; each module documents its own routes in full:

* :mod:`.click2mail.routes`: ``GET /molpro/credit``, ``POST /molpro/credit/purchase`` (Basic auth, XML).
* :mod:`.pitney_bowes.routes`: ``POST /oauth/token``; under
  ``/shippingservices/v1/developers/{developerId}/merchants/{prn}/`` (Bearer): ``GET account-balance``,
  ``POST account/fund``, ``GET|POST autorefillrule``; and
  ``GET /shippingservices/v4/ledger/developers/{developerId}/transactions/reports`` (transaction history).
* :mod:`.control`: ``/_sandbox/state``, ``/_sandbox/reset``, ``/_sandbox/c2m/accounts/{username}[/drain]``,
  ``/_sandbox/pb/merchants/{prn}[/drain|/autorefill|/transactions]``, ``/_sandbox/faults``,
  ``/_sandbox/counters[/reset]``, ``/_sandbox/settings``, ``/_sandbox/tokens/expire``.

Every API route runs under the faults queued for its endpoint (:class:`.replies.FaultRunner`,
endpoint names in :mod:`.faults`). Every reply, API or control, goes through
:class:`.wire.WireMiddleware`: compressed (gzip or deflate) when ``compress`` is on and
``Accept-Encoding`` allows, chunked when ``chunked`` is on, and broken on the wire as a ``drop`` or
``wire`` fault says.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI

from . import control
from .click2mail import routes as click2mail_routes
from .pitney_bowes import replies as pitney_bowes_replies
from .pitney_bowes import routes as pitney_bowes_routes
from .replies import XML_DECLARATION, FaultRunner
from .state import SandboxState
from .wire import DROP_MARKER_HEADER, ConnectionRegistry, WireMiddleware, install_drop_log_filter

__all__ = ["DROP_MARKER_HEADER", "XML_DECLARATION", "create_app", "install_drop_log_filter"]


def create_app(state: SandboxState | None = None) -> FastAPI:
    """Build the sandbox application around ``state`` (a fresh default-seeded one if None)."""
    sandbox = state if state is not None else SandboxState()
    app = FastAPI(
        title="postage-sandbox",
        description="Local emulator of the Click2Mail and Pitney Bowes APIs (tests and demos).",
        version="1.0",
    )
    app.state.sandbox = sandbox
    # Set (by SandboxServer.stop) to cut fault delays and trickles short so that shutdown stays quick and clean.
    stopping = threading.Event()
    app.state.stopping = stopping
    # Open connections by peer address, filled by SandboxServer's HTTP protocol (raw-socket wire faults).
    registry = ConnectionRegistry()
    app.state.connections = registry
    app.add_middleware(WireMiddleware, sandbox=sandbox, registry=registry, stopping=stopping)
    install_drop_log_filter()

    calls = FaultRunner(sandbox, stopping, {**click2mail_routes.STUBS, **pitney_bowes_replies.STUBS})
    app.include_router(click2mail_routes.router(sandbox, calls))
    app.include_router(pitney_bowes_routes.router(sandbox, calls))
    control.install(app, sandbox)
    return app
