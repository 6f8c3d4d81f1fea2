"""Faults: what the sandbox does instead of (or after) the normal reply of one call of an endpoint.

:data:`ENDPOINTS` names every call that can be faulted and is counted (``SandboxState.inject_fault``,
``POST /_sandbox/faults``, ``counters()["requests"]``):

* Click2Mail: ``c2m_credit`` (``GET /molpro/credit``), ``c2m_purchase`` (``POST /molpro/credit/purchase``);
* Pitney Bowes: ``pb_token`` (``POST /oauth/token``), ``pb_balance`` (``GET …/account-balance``),
  ``pb_fund`` (``POST …/account/fund``), ``pb_autorefill_get`` / ``pb_autorefill_set``
  (``GET`` / ``POST …/autorefillrule``), ``pb_transactions``
  (``GET /shippingservices/v4/ledger/…/transactions/reports``).

:class:`Fault` describes one fault; :mod:`.replies` carries it out over HTTP and :mod:`.wire` on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

from .errors import InvalidSettingError

__all__ = ["ENDPOINTS", "WIRE_FAULTS", "Endpoint", "Fault", "WireFault", "check_endpoint"]

Endpoint = Literal[
    "c2m_credit",
    "c2m_purchase",
    "pb_token",
    "pb_balance",
    "pb_fund",
    "pb_autorefill_get",
    "pb_autorefill_set",
    "pb_transactions",
]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)

#: How a :class:`Fault` breaks the reply on the wire (see :class:`Fault`).
WireFault = Literal["tls_alert", "corrupt_record", "reset", "cut_body", "oversize", "trickle"]
WIRE_FAULTS: tuple[WireFault, ...] = get_args(WireFault)


def check_endpoint(value: object) -> Endpoint:
    """``value`` if it names an endpoint, else :class:`InvalidSettingError` listing the known ones."""
    if value not in ENDPOINTS:
        raise InvalidSettingError(f"unknown endpoint {value!r}; known: {', '.join(ENDPOINTS)}")
    return value


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or after) the normal reply of one call.

    * ``status``: answer this HTTP status instead; with ``body`` None a realistic body for the API
      and status is used (status 2xx without body: an empty body).
    * ``body`` / ``content_type``: answer this body (status 200 unless ``status`` is given).
    * ``delay``: seconds to wait (asynchronously) before answering.
    * ``apply``: run the normal handler first (purchase/fund applied, token issued), then the fault;
      with no status/body/drop/wire the normal reply is sent after the delay.
    * ``drop``: send the response head with a Content-Length larger than the body actually sent,
      then close the connection (the "reply lost" case).
    * ``headers``: extra response headers (e.g. ``Retry-After``).
    * ``wire``: break the reply on the wire, after the reply is decided (with ``apply`` after the
      purchase / refill / token is applied). One of :data:`WIRE_FAULTS`:

      - ``"tls_alert"``: write a TLS fatal alert record (``15 03 03 00 02 02 50``, internal_error)
        in clear on the TCP socket under the TLS layer, then close: the client's TLS layer fails
        after its request was fully sent and processed. On plain HTTP the same 7 bytes arrive as
        a garbage status line.
      - ``"corrupt_record"``: write a bogus TLS application-data record (``17 03 03``, a 2-byte
        length, random bytes) on the raw socket, then close: "bad record mac" / decryption
        failure in the client (garbage on plain HTTP).
      - ``"reset"``: close with a TCP RST (SO_LINGER on, timeout 0) without sending any reply.
      - ``"cut_body"``: send the head and about half of the body, then close. With the ``chunked``
        setting the head says ``Transfer-Encoding: chunked`` and the terminating chunk never comes;
        otherwise the head has the true Content-Length and fewer bytes arrive.
      - ``"oversize"``: the reply (200, or ``status``) gets about 1.5 MiB of valid-looking padding in
        its content type (a ``"padding"`` member in a JSON object, an XML/HTML comment after the
        document), random base64 so that it stays over 1 MiB even when compressed. Without
        ``apply`` (and without status/body) the body is a padding-only document.
      - ``"trickle"``: send the reply (the normal one unless status/body say otherwise; the handler
        runs, as with a bare ``delay``) with its head at once, then one body byte every
        ``trickle_interval`` seconds: a client without an overall deadline hangs while its per-read
        timeout never fires. Stops (closing the connection) when the server stops.

      Except ``trickle``, a wire fault without ``apply`` means the request is not processed.
      ``tls_alert``, ``corrupt_record`` and ``reset`` need the connection registry of
      :class:`~.server.SandboxServer`; under another ASGI server they degrade to ``cut_body``.
    * ``trickle_interval``: seconds between two bytes of a ``trickle`` reply (> 0, default 0.5).

    A fault with only ``delay`` makes a slow but otherwise normal call (applied after the delay).
    ``drop`` and ``wire`` cannot be combined (``drop`` is an older, lying-Content-Length ``cut_body``).
    """

    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    apply: bool = False
    drop: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    wire: WireFault | None = None
    trickle_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.status is not None and (
            isinstance(self.status, bool) or not isinstance(self.status, int) or not 200 <= self.status <= 599
        ):
            raise InvalidSettingError(f"fault status must be an int in 200..599, got {self.status!r}")
        if self.body is not None and not isinstance(self.body, str):
            raise InvalidSettingError("fault body must be a string or null")
        if self.content_type is not None and not isinstance(self.content_type, str):
            raise InvalidSettingError("fault content_type must be a string or null")
        delay = _duration(self.delay)
        if delay is None or delay < 0:
            raise InvalidSettingError(f"fault delay must be a number of seconds >= 0, got {self.delay!r}")
        object.__setattr__(self, "delay", delay)  # a duration, not money
        if not isinstance(self.apply, bool) or not isinstance(self.drop, bool):
            raise InvalidSettingError("fault apply and drop must be booleans")
        if self.wire is not None and self.wire not in WIRE_FAULTS:
            raise InvalidSettingError(f"fault wire must be one of {WIRE_FAULTS} or null, got {self.wire!r}")
        if self.wire is not None and self.drop:
            raise InvalidSettingError("fault drop and wire cannot be combined (use wire='cut_body')")
        interval = _duration(self.trickle_interval)
        if interval is None or interval <= 0:
            raise InvalidSettingError(
                f"fault trickle_interval must be a number of seconds > 0, got {self.trickle_interval!r}"
            )
        object.__setattr__(self, "trickle_interval", interval)

    @property
    def replaces_reply(self) -> bool:
        """True when the fault decides the reply (status, body, drop or a wire fault other than
        ``trickle``) rather than only delaying or slowing it."""
        return (
            self.status is not None
            or self.body is not None
            or self.drop
            or (self.wire is not None and self.wire != "trickle")
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        known = {"status", "body", "content_type", "delay", "apply", "drop", "headers", "wire", "trickle_interval"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSettingError(f"unknown fault keys: {unknown}")
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidSettingError("fault headers must be an object of strings")
        delay = _seconds(data.get("delay", 0))
        return cls(
            status=data.get("status"),
            body=data.get("body"),
            content_type=data.get("content_type"),
            delay=delay,
            apply=data.get("apply", False),
            drop=data.get("drop", False),
            headers=tuple(headers.items()),
            wire=data.get("wire"),
            trickle_interval=_seconds(data.get("trickle_interval", 0.5)),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": self.body,
            "content_type": self.content_type,
            "delay": str(self.delay),
            "apply": self.apply,
            "drop": self.drop,
            "headers": dict(self.headers),
            "wire": self.wire,
            "trickle_interval": str(self.trickle_interval),
        }


def _duration(value: object) -> float | None:
    """A finite number of seconds as float (durations are not money), None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None


def _seconds(value: Any) -> Any:
    """A duration given as a decimal string (the form :meth:`Fault.to_mapping` writes) read as a number."""
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise InvalidSettingError(f"not a number of seconds: {value!r}") from None
    return value
