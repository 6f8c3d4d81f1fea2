"""The ``/_sandbox/*`` control routes: inspect and steer the sandbox over HTTP (tests, demos, other processes).

JSON in and out, no auth; amounts as strings or JSON numbers in (read as Decimal), two-place strings
out. Bodies are pydantic models that refuse unknown fields (:mod:`.control_bodies`). Unknown account,
merchant or endpoint -> 404 ``{"error": …}``; unknown field or bad value -> 400 ``{"error": …}``.

* ``GET  /_sandbox/state`` snapshot; ``POST /_sandbox/reset`` back to the seed (returns the snapshot).
* ``POST /_sandbox/c2m/accounts/{username}`` ``{"balance", "allow_negative", "environment", "password"}``
  (any subset) -> the account; ``POST /_sandbox/c2m/accounts/{username}/drain`` ``{"rate_per_second"}``.
* ``POST /_sandbox/pb/merchants/{prn}`` ``{"available_balance", "fund_enabled", "balance_owed",
  "available_credit", "credit_limit", "minimum_amount_due", "minimum_due_date"}`` -> the merchant;
  ``POST /_sandbox/pb/merchants/{prn}/drain`` ``{"rate_per_second"}``.
* ``POST /_sandbox/pb/merchants/{prn}/autorefill`` ``{"threshold", "add_amount", "enabled"}`` (left out:
  null / false) -> the merchant; the same rule as the PB ``autorefillrule`` route, without a token.
* ``GET  /_sandbox/pb/merchants/{prn}/transactions`` -> ``{"prn", "transactions": [{"transaction_id",
  "prn", "type", "amount", "at", "description"}]}`` (the history, oldest first);
  ``POST`` the same path with ``{"transactions": [{"amount", "at", "type"?, "transaction_id"?,
  "description"?}]}`` (or a bare list) adds past entries -> ``{"prn", "added": […], "transactions": […]}``.
  ``at`` is an ISO 8601 date-time, ``type`` defaults to ``"POSTAGE FUND"``.
* ``POST /_sandbox/faults`` ``{"endpoint", "times", "after", "status", "body", "content_type", "delay", "apply",
  "drop", "headers", "wire", "trickle_interval"}`` -> ``{"endpoint", "pending", "fault"}``;
  ``GET /_sandbox/faults``; ``DELETE /_sandbox/faults[?endpoint=…]``. ``"wire"`` is one of
  ``"tls_alert"``, ``"corrupt_record"``, ``"reset"``, ``"cut_body"``, ``"oversize"``, ``"trickle"``
  (see :class:`.faults.Fault`); endpoints are listed in :mod:`.faults`.
* ``GET /_sandbox/counters``; ``POST /_sandbox/counters/reset``.
* ``GET|POST /_sandbox/settings`` ``{"token_ttl", "c2m_purchase_reply", "pb_duplicate_transaction",
  "settle_seconds", "compress", "chunked"}`` (any subset in, all out; see :mod:`.settings`).
* ``POST /_sandbox/tokens/expire`` -> ``{"expired": n}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from .control_bodies import (
    AutoRefillBody,
    C2MAccountBody,
    DrainBody,
    FaultBody,
    PBMerchantBody,
    SettingsBody,
    TransactionsBody,
    parse_body,
)
from .errors import InvalidSettingError, SandboxError, UnknownEntityError
from .faults import Fault
from .jsonio import loads
from .replies import json_response

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = ["install"]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return loads(raw)
    except ValueError:
        raise InvalidSettingError("the body is not valid JSON") from None


async def _json_object(request: Request) -> dict[str, Any]:
    data = await _json_body(request)
    if not isinstance(data, dict):
        raise InvalidSettingError("the body must be a JSON object")
    return data


def install(app: FastAPI, sandbox: SandboxState) -> None:
    """Add the control routes over ``sandbox`` to ``app``, with the handler that answers SandboxErrors."""

    async def sandbox_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, UnknownEntityError) else 400
        return json_response(status, {"error": str(exc)})

    app.add_exception_handler(SandboxError, sandbox_error)
    app.include_router(_router(sandbox))


def _router(sandbox: SandboxState) -> APIRouter:
    routes = APIRouter(prefix="/_sandbox", tags=["sandbox"])

    def c2m_account(username: str) -> dict[str, Any]:
        accounts: dict[str, Any] = sandbox.snapshot()["c2m"]["accounts"]
        return {"username": username, **accounts[username]}

    def pb_merchant(prn: str) -> dict[str, Any]:
        merchants: dict[str, Any] = sandbox.snapshot()["pb"]["merchants"]
        return {"prn": prn, **merchants[prn]}

    def history(prn: str) -> list[dict[str, Any]]:
        return [entry.to_mapping() for entry in sandbox.pb_transactions(prn=prn)]

    @routes.get("/state")
    async def get_state() -> Response:
        return json_response(200, sandbox.snapshot())

    @routes.post("/reset")
    async def reset() -> Response:
        sandbox.reset()
        return json_response(200, sandbox.snapshot())

    @routes.post("/c2m/accounts/{username}")
    async def set_c2m_account(request: Request, username: str) -> Response:
        body = parse_body(C2MAccountBody, await _json_object(request))
        sandbox.set_c2m_account(username, **body.model_dump(exclude_unset=True))
        return json_response(200, c2m_account(username))

    @routes.post("/c2m/accounts/{username}/drain")
    async def drain_c2m(request: Request, username: str) -> Response:
        body = parse_body(DrainBody, await _json_object(request))
        sandbox.drain_c2m(username, body.rate_per_second)
        return json_response(200, c2m_account(username))

    @routes.post("/pb/merchants/{prn}")
    async def set_pb_merchant(request: Request, prn: str) -> Response:
        body = parse_body(PBMerchantBody, await _json_object(request))
        sandbox.set_pb_merchant(prn, **body.model_dump(exclude_unset=True))
        return json_response(200, pb_merchant(prn))

    @routes.post("/pb/merchants/{prn}/drain")
    async def drain_pb(request: Request, prn: str) -> Response:
        body = parse_body(DrainBody, await _json_object(request))
        sandbox.drain_pb(prn, body.rate_per_second)
        return json_response(200, pb_merchant(prn))

    @routes.post("/pb/merchants/{prn}/autorefill")
    async def set_pb_autorefill(request: Request, prn: str) -> Response:
        body = parse_body(AutoRefillBody, await _json_object(request))
        sandbox.set_pb_autorefill_rule(prn, threshold=body.threshold, add_amount=body.add_amount, enabled=body.enabled)
        return json_response(200, pb_merchant(prn))

    @routes.get("/pb/merchants/{prn}/transactions")
    async def get_pb_transactions(prn: str) -> Response:
        return json_response(200, {"prn": prn, "transactions": history(prn)})

    @routes.post("/pb/merchants/{prn}/transactions")
    async def add_pb_transactions(request: Request, prn: str) -> Response:
        data = await _json_body(request)
        body = parse_body(TransactionsBody, {"transactions": data} if isinstance(data, list) else data)
        items = [item.model_dump(exclude_unset=True) for item in body.transactions]
        added = [entry.to_mapping() for entry in sandbox.add_pb_transactions(prn, items)]
        return json_response(200, {"prn": prn, "added": added, "transactions": history(prn)})

    @routes.get("/faults")
    async def get_faults() -> Response:
        return json_response(200, {k: [f.to_mapping() for f in v] for k, v in sandbox.pending_faults().items()})

    @routes.post("/faults")
    async def add_fault(request: Request) -> Response:
        body = parse_body(FaultBody, await _json_object(request))
        fault = Fault(
            status=body.status,
            body=body.body,
            content_type=body.content_type,
            delay=body.delay,  # type: ignore[arg-type]  # Fault checks and converts the duration
            apply=body.apply,
            drop=body.drop,
            headers=tuple((body.headers or {}).items()),
            wire=body.wire,
            trickle_interval=body.trickle_interval,  # type: ignore[arg-type]
        )
        sandbox.inject_fault(body.endpoint, fault, times=body.times, after=body.after)
        pending = sandbox.pending_faults()[body.endpoint]
        return json_response(200, {"endpoint": body.endpoint, "pending": len(pending), "fault": fault.to_mapping()})

    @routes.delete("/faults")
    async def clear_faults(endpoint: str | None = None) -> Response:
        sandbox.clear_faults(endpoint)  # type: ignore[arg-type]
        return json_response(200, {"cleared": endpoint or "all"})

    @routes.get("/counters")
    async def get_counters() -> Response:
        return json_response(200, sandbox.counters())

    @routes.post("/counters/reset")
    async def reset_counters() -> Response:
        sandbox.reset_counters()
        return json_response(200, sandbox.counters())

    @routes.get("/settings")
    async def get_settings() -> Response:
        return json_response(200, sandbox.settings())

    @routes.post("/settings")
    async def set_settings(request: Request) -> Response:
        body = parse_body(SettingsBody, await _json_object(request))
        return json_response(200, sandbox.update_settings(body.model_dump(exclude_unset=True)))

    @routes.post("/tokens/expire")
    async def expire_tokens() -> Response:
        return json_response(200, {"expired": sandbox.expire_tokens()})

    return routes
