"""Pitney Bowes replies: error shapes, realistic bodies for faulted statuses, and the bearer-token checks.

Errors are unified (``{"errors":[{"errorCode","errorDescription","additionalInfo","parameters"}]}``)
when the request says ``X-PB-UnifiedErrorStructure: true``, else ``{"status":"ERROR","errors":[…]}``;
401s are always unified, and the token endpoint answers ``[{"errorCode","message","additionalInfo"}]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from ..jsonio import dumps
from ..replies import HTML, JSON, DefaultBody, html_page, json_response
from .records import IssuedToken

if TYPE_CHECKING:
    from ..state import SandboxState

__all__ = [
    "STUBS",
    "authorize",
    "default_body",
    "developer_check",
    "error",
    "merchant_check",
    "token_default_body",
    "token_error_doc",
]

#: Start of each endpoint's normal reply (what a ``drop`` / ``wire`` fault sends) and its content type.
STUBS: dict[str, tuple[str, str]] = {
    "pb_token": ('{"access_token":"sbxtok-', JSON),
    "pb_balance": ('{"accounts":[{"accountType":"Postage Account",', JSON),
    "pb_fund": ('{"amount":', JSON),
    "pb_autorefill_get": ('{"merchantID":', JSON),
    "pb_autorefill_set": ('{"merchantID":', JSON),
    "pb_transactions": ('{"content":[', JSON),
}

_ERRORS = {
    400: ("PB-BAD-REQUEST", "Bad request"),
    401: ("PB-APIM-ERR-1003", "Invalid or expired token"),
    403: ("1000033", "Unauthorized API access for given credentials"),
    404: ("PB-RESOURCE-NOT-FOUND", "Requested resource does not exist"),
    405: ("PB-METHOD-NOT-ALLOWED", "Method not allowed"),
    429: ("PB-TOO-MANY-REQUESTS", "Too many requests"),
    500: ("PB-INTERNAL-ERROR", "Internal server error. Please try the call again."),
    503: ("PB-SERVICE-UNAVAILABLE", "The service is under maintenance. Please try again later."),
}
_TOKEN_ERRORS = {
    400: ("1000004", "Invalid request"),
    401: ("1000032", "Authentication error"),
}


def _wants_unified(request: Request) -> bool:
    return request.headers.get("x-pb-unifiederrorstructure", "").strip().lower() == "true"


def _unified(code: str, description: str) -> dict[str, Any]:
    return {"errors": [{"errorCode": code, "errorDescription": description, "additionalInfo": None, "parameters": []}]}


def _error_doc(unified: bool, code: str, description: str) -> dict[str, Any]:
    if unified:
        return _unified(code, description)
    return {"status": "ERROR", "errors": [{"errorCode": code, "errorDescription": description}]}


def error(request: Request, status: int, code: str, description: str) -> Response:
    """An error reply in the shape the request asked for."""
    return json_response(status, _error_doc(_wants_unified(request), code, description))


def token_error_doc(code: str, message: str) -> list[dict[str, Any]]:
    return [{"errorCode": code, "message": message, "additionalInfo": None}]


def _unauthorized(code: str = "PB-APIM-ERR-1003", description: str = "Invalid or expired token") -> Response:
    return json_response(401, _unified(code, description), {"WWW-Authenticate": "Bearer"})


def _is_gateway_status(status: int) -> bool:
    return status >= 500 and status not in (500, 503)


def default_body(request: Request) -> DefaultBody:
    """Realistic bodies for faulted statuses of the shipping API routes."""

    def body(status: int) -> tuple[str, str]:
        if status < 400:  # 2xx/3xx: no body unless one is given
            return "", JSON
        if _is_gateway_status(status):
            return html_page(status), HTML
        code, description = _ERRORS.get(status, ("PB-ERROR", "Error"))
        if status == 401:
            return dumps(_unified(code, description)), JSON
        return dumps(_error_doc(_wants_unified(request), code, description)), JSON

    return body


def token_default_body(status: int) -> tuple[str, str]:
    """Realistic bodies for faulted statuses of ``POST /oauth/token``."""
    if status < 400:  # 2xx/3xx: no body unless one is given
        return "", JSON
    if _is_gateway_status(status):
        return html_page(status), HTML
    code, message = _TOKEN_ERRORS.get(status) or _ERRORS.get(status, ("PB-ERROR", "Error"))
    return dumps(token_error_doc(code, message)), JSON


def authorize(sandbox: SandboxState, request: Request) -> IssuedToken | Response:
    """The grant of the request's bearer token, or its 401 reply."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("PB-APIM-ERR-1002", "Missing or malformed Authorization header")
    issued = sandbox.pb_lookup_token(token.strip())
    if issued is None:
        return _unauthorized()
    return issued


def developer_check(request: Request, issued: IssuedToken) -> Response | None:
    """403 ``1000033`` unless the path's ``developer_id`` is the token's developer."""
    if request.path_params["developer_id"] != issued.developer_id:
        return error(request, 403, "1000033", "Unauthorized API access for given credentials")
    return None


def merchant_check(sandbox: SandboxState, request: Request, issued: IssuedToken, prn: str) -> Response | None:
    """The developer check, then 404 unless merchant ``prn`` exists and belongs to that developer."""
    refused = developer_check(request, issued)
    if refused is not None:
        return refused
    if not sandbox.pb_merchant_visible(prn, issued.developer_id):
        return error(request, 404, "PB-RESOURCE-NOT-FOUND", f"Merchant with postalReportingNumber {prn} not found")
    return None
