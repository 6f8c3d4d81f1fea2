"""Multi-step exchanges (read with a token, renew it once on a 401, buy and reconcile) as sans-I/O
state machines, after h11: a flow is a generator that yields what it needs and is sent what came back.

A flow yields

- an :class:`HttpRequest`: the driver sends it and sends back the :class:`HttpResponse`, or throws the
  :class:`PostageTransportError` into the flow when no usable reply came;
- a :class:`NeedToken`: the driver answers with a bearer token from the process-wide cache, fetching one
  with the given flow when there is none (or when ``refused`` names the one the API just refused).

and returns its result. The drivers (``_drivers``: requests for hooks, aiohttp for triggers) hold no API
logic; which requests may be retried is said by each request (``moves_money``) and the shared read policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse

T = TypeVar("T")


@dataclass(frozen=True)
class Token:
    """A bearer token and the seconds it stays valid."""

    access_token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"Token(expires_in={self.expires_in})"


@dataclass(frozen=True)
class NeedToken:
    """Ask the driver for the token of ``key`` (a digest of the credentials, never the secret).

    ``fetch`` builds the flow that gets a new one; ``refused`` is the token the API just refused (401),
    dropped from the cache first unless another caller already replaced it."""

    key: str
    fetch: Callable[[], Flow[Token]]
    refused: str | None = None


Effect = Union[HttpRequest, NeedToken]  # noqa: UP007 - a runtime alias, also on Python 3.10
#: What the driver sends back: a reply, or a token for a :class:`NeedToken`.
Answer = Union[HttpResponse, str]  # noqa: UP007
Flow = Generator[Effect, Any, T]


def send(request: HttpRequest) -> Generator[Effect, Any, HttpResponse]:
    """``reply = yield from send(request)``: a typed way to yield a request from a flow."""
    reply = yield request
    assert isinstance(reply, HttpResponse)
    return reply


def token(key: str, fetch: Callable[[], Flow[Token]], refused: str | None = None) -> Generator[Effect, Any, str]:
    """``bearer = yield from token(...)``: the cached token, or a new one."""
    value = yield NeedToken(key, fetch, refused)
    assert isinstance(value, str)
    return value


def purchase_key(*parts: object) -> str:
    """A stable idempotency key from the parts that identify one purchase (e.g. dag id, run id, task id,
    map index): every retry of the same purchase sends the same key. 25 characters of ``[a-z0-9-]``,
    which every service's key format takes (Pitney Bowes: at most 25 of letters, digits, ``-``, ``_``)."""
    digest = hashlib.sha256("\0".join(str(part) for part in parts).encode()).hexdigest()
    return f"pga-{digest[:21]}"
