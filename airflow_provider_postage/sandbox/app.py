"""FastAPI application emulating Click2Mail and Pitney Bowes, plus the ``/_sandbox`` control routes.

API routes:

* ``GET  /molpro/credit`` (Basic auth) -> 200 XML ``<credit><balance>5.0</balance><allowNegative>…``;
  bad or missing credentials -> 401 ``text/html``.
* ``POST /molpro/credit/purchase`` (Basic auth, form body with the 11 billing parameters) -> 200 XML
  in the shape ``state.c2m_purchase_reply`` selects; rule failures -> 400 XML ``<status>9</status>``.
* ``POST /oauth/token`` (Basic key:secret, form ``grant_type=client_credentials``) -> 200 JSON token;
  bad credentials -> 401 ``[{"errorCode":"1000032",…}]``; other grant/body -> 400 same shape.
* ``GET  /shippingservices/v1/developers/{developerId}/merchants/{prn}/account-balance`` (Bearer).
* ``POST /shippingservices/v1/developers/{developerId}/merchants/{prn}/account/fund`` (Bearer,
  ``X-PB-TransactionId``, JSON ``{"amount": <int>, "currencyCode": "USD"}``).
  Errors: 401 unified ``PB-APIM-ERR-1003`` (``-1002`` without a Bearer header), 403 ``1000033``
  (developer id not the token's), 403 ``PB-ACCOUNT-NOT-ENABLED``, 404 ``PB-RESOURCE-NOT-FOUND``,
  400 ``PB-INVALID-TRANSACTION-ID`` / ``1000050`` / ``PB-INVALID-CURRENCY`` / ``PB-INSUFFICIENT-CREDIT``
  / ``PB-DUPLICATE-TRANSACTION``; unified shape with ``X-PB-UnifiedErrorStructure: true``, else
  ``{"status":"ERROR","errors":[…]}``.

Control routes (JSON in and out, no auth; amounts as strings or JSON numbers in, strings out;
unknown name -> 404 ``{"error": …}``, bad value -> 400 ``{"error": …}``):

* ``GET  /_sandbox/state`` snapshot; ``POST /_sandbox/reset`` back to the seed (returns the snapshot).
* ``POST /_sandbox/c2m/accounts/{username}`` ``{"balance", "allow_negative", "environment", "password"}``
  (any subset) -> the account; ``POST /_sandbox/c2m/accounts/{username}/drain`` ``{"rate_per_second"}``.
* ``POST /_sandbox/pb/merchants/{prn}`` ``{"available_balance", "fund_enabled", "balance_owed",
  "available_credit", "credit_limit", "minimum_amount_due", "minimum_due_date"}`` -> the merchant;
  ``POST /_sandbox/pb/merchants/{prn}/drain`` ``{"rate_per_second"}``.
* ``POST /_sandbox/faults`` ``{"endpoint", "times", "after", "status", "body", "content_type", "delay", "apply",
  "drop", "headers", "wire", "trickle_interval"}`` -> ``{"endpoint", "pending", "fault"}``;
  ``GET /_sandbox/faults``; ``DELETE /_sandbox/faults[?endpoint=…]``. ``"wire"`` is one of
  ``"tls_alert"``, ``"corrupt_record"``, ``"reset"``, ``"cut_body"``, ``"oversize"``, ``"trickle"``
  (see :class:`.state.Fault`).
* ``GET /_sandbox/counters``; ``POST /_sandbox/counters/reset``.
* ``GET|POST /_sandbox/settings`` ``{"token_ttl", "c2m_purchase_reply", "pb_duplicate_transaction",
  "settle_seconds", "compress", "chunked"}`` (any subset in, all out).
* ``POST /_sandbox/tokens/expire`` -> ``{"expired": n}``.

Every reply, API or control, goes through :class:`.wire.WireMiddleware`: compressed (gzip or
deflate) when ``compress`` is on and ``Accept-Encoding`` allows, chunked when ``chunked`` is on,
and broken on the wire as a ``drop`` or ``wire`` fault says.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .rules import (
    TRANSACTION_ID_RE,
    RuleError,
    c2m_balance_text,
    dumps,
    loads,
    validate_c2m_purchase,
    validate_fund_body,
)
from .state import (
    Endpoint,
    Fault,
    InvalidSettingError,
    IssuedToken,
    SandboxError,
    SandboxState,
    UnknownEntityError,
)
from .wire import (
    DROP_MARKER_HEADER,
    WIRE_MARKER_HEADER,
    ConnectionRegistry,
    WireMiddleware,
    install_drop_log_filter,
    interruptible_sleep,
    padding_text,
)

__all__ = ["DROP_MARKER_HEADER", "XML_DECLARATION", "create_app", "install_drop_log_filter"]

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
XML = "application/xml"
JSON = "application/json"
HTML = "text/html"


# --------------------------------------------------------------------------------------------
# Response helpers
# --------------------------------------------------------------------------------------------
def _response(status: int, body: str, content_type: str | None, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=content_type or None, headers=headers)


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return _response(status, dumps(obj), JSON, headers)


_STATUS_TITLES = {
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
    524: "524: A timeout occurred",
}


def html_page(status: int) -> str:
    """An HTML error page of the kind a gateway or web server answers with."""
    title = _STATUS_TITLES.get(status, f"{status} Error")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


_C2M_DESCRIPTIONS = {
    400: "Invalid input data",
    403: "Access denied",
    404: "Resource not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
    500: "An unexpected error has occurred. Please try again later.",
}


def _c2m_status9(description: str) -> str:
    return (
        f"{XML_DECLARATION}\n<credit>\n    <status>9</status>\n"
        f"    <description>{escape(description)}</description>\n</credit>\n"
    )


def _c2m_error(status: int, description: str) -> Response:
    return _response(status, _c2m_status9(description), XML)


def _c2m_unauthorized() -> Response:
    return _response(401, html_page(401), HTML, {"WWW-Authenticate": 'Basic realm="Click2Mail"'})


def _c2m_fault_default(status: int) -> tuple[str, str]:
    if status < 400:  # 2xx/3xx: no body unless one is given
        return "", XML
    if status == 401:
        return html_page(401), HTML
    if status < 500 or status == 500:
        return _c2m_status9(_C2M_DESCRIPTIONS.get(status, "Error")), XML
    return html_page(status), HTML


_PB_ERRORS = {
    400: ("PB-BAD-REQUEST", "Bad request"),
    401: ("PB-APIM-ERR-1003", "Invalid or expired token"),
    403: ("1000033", "Unauthorized API access for given credentials"),
    404: ("PB-RESOURCE-NOT-FOUND", "Requested resource does not exist"),
    405: ("PB-METHOD-NOT-ALLOWED", "Method not allowed"),
    429: ("PB-TOO-MANY-REQUESTS", "Too many requests"),
    500: ("PB-INTERNAL-ERROR", "Internal server error. Please try the call again."),
    503: ("PB-SERVICE-UNAVAILABLE", "The service is under maintenance. Please try again later."),
}
_PB_TOKEN_ERRORS = {
    400: ("1000004", "Invalid request"),
    401: ("1000032", "Authentication error"),
}


def _wants_unified(request: Request) -> bool:
    return request.headers.get("x-pb-unifiederrorstructure", "").strip().lower() == "true"


def _pb_unified(code: str, description: str) -> dict[str, Any]:
    return {"errors": [{"errorCode": code, "errorDescription": description, "additionalInfo": None, "parameters": []}]}


def _pb_error_doc(unified: bool, code: str, description: str) -> dict[str, Any]:
    if unified:
        return _pb_unified(code, description)
    return {"status": "ERROR", "errors": [{"errorCode": code, "errorDescription": description}]}


def _pb_error(request: Request, status: int, code: str, description: str) -> Response:
    return _json(status, _pb_error_doc(_wants_unified(request), code, description))


def _pb_token_error_doc(code: str, message: str) -> list[dict[str, Any]]:
    return [{"errorCode": code, "message": message, "additionalInfo": None}]


def _pb_unauthorized(code: str = "PB-APIM-ERR-1003", description: str = "Invalid or expired token") -> Response:
    return _json(401, _pb_unified(code, description), {"WWW-Authenticate": "Bearer"})


def _is_gateway_status(status: int) -> bool:
    return status >= 500 and status not in (500, 503)


_DROP_STUBS: dict[str, tuple[str, str]] = {
    "c2m_credit": (f"{XML_DECLARATION}\n<credit>\n    <balance>", XML),
    "c2m_purchase": (f"{XML_DECLARATION}\n<credit>\n    <status>", XML),
    "pb_token": ('{"access_token":"sbxtok-', JSON),
    "pb_balance": ('{"accounts":[{"accountType":"Postage Account",', JSON),
    "pb_fund": ('{"amount":', JSON),
}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------
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

    async def sleep(delay: float) -> None:
        await interruptible_sleep(delay, stopping)

    async def with_fault(
        endpoint: Endpoint,
        handler: Callable[[], Awaitable[Response]],
        default_body: Callable[[int], tuple[str, str]],
    ) -> Response:
        fault = sandbox.begin_call(endpoint)
        if fault is None:
            return await handler()
        reply: Response | None = None
        if fault.apply:
            reply = await handler()
            if fault.delay:
                await sleep(fault.delay)
        else:
            if fault.delay:
                await sleep(fault.delay)
            if not fault.replaces_reply:
                reply = await handler()
        return _fault_response(endpoint, fault, reply, default_body)

    # ------------------------------------------------------------------------ Click2Mail
    def c2m_user(request: Request) -> str | None:
        creds = _basic_credentials(request)
        if creds is None or not sandbox.c2m_check_credentials(*creds):
            return None
        return creds[0]

    @app.get("/molpro/credit", tags=["click2mail"])
    async def c2m_credit(request: Request) -> Response:
        async def handler() -> Response:
            user = c2m_user(request)
            if user is None:
                return _c2m_unauthorized()
            try:
                balance, allow_negative = sandbox.c2m_credit(user)
            except UnknownEntityError:
                return _c2m_unauthorized()
            body = (
                f"{XML_DECLARATION}\n<credit>\n    <balance>{c2m_balance_text(balance)}</balance>\n"
                f"    <allowNegative>{'true' if allow_negative else 'false'}</allowNegative>\n</credit>\n"
            )
            return _response(200, body, XML)

        return await with_fault("c2m_credit", handler, _c2m_fault_default)

    @app.post("/molpro/credit/purchase", tags=["click2mail"])
    async def c2m_purchase(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            user = c2m_user(request)
            if user is None:
                return _c2m_unauthorized()
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            form: dict[str, str] = {}
            if content_type == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
            try:
                checked = validate_c2m_purchase(form, sandbox.c2m_environment(user), sandbox.today())
            except RuleError as exc:
                return _c2m_error(400, exc.description)
            except UnknownEntityError:
                return _c2m_unauthorized()
            sandbox.c2m_apply_purchase(user, checked.amount, checked.card_number)
            return _response(200, _c2m_purchase_success(sandbox.c2m_purchase_reply), XML)

        return await with_fault("c2m_purchase", handler, _c2m_fault_default)

    # ------------------------------------------------------------------------ Pitney Bowes token
    @app.post("/oauth/token", tags=["pitney-bowes"])
    async def pb_token(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            creds = _basic_credentials(request)
            if creds is None or not sandbox.pb_check_credentials(*creds):
                return _json(401, _pb_token_error_doc("1000032", "Authentication error"))
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            form: dict[str, str] = {}
            if content_type == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
            if form.get("grant_type") != "client_credentials":
                return _json(400, _pb_token_error_doc("1000004", "Invalid grant_type: expected client_credentials"))
            issued = sandbox.pb_issue_token(*creds)
            if issued is None:  # credentials removed in between
                return _json(401, _pb_token_error_doc("1000032", "Authentication error"))
            return _json(
                200,
                {
                    "access_token": issued.token,
                    "tokenType": "BearerToken",
                    "issuedAt": str(issued.issued_at_ms),
                    "expiresIn": str(issued.expires_in),
                    "clientID": issued.api_key,
                    "org": "sandbox",
                },
            )

        def default_body(status: int) -> tuple[str, str]:
            if status < 400:  # 2xx/3xx: no body unless one is given
                return "", JSON
            if _is_gateway_status(status):
                return html_page(status), HTML
            code, message = _PB_TOKEN_ERRORS.get(status) or _PB_ERRORS.get(status, ("PB-ERROR", "Error"))
            return dumps(_pb_token_error_doc(code, message)), JSON

        return await with_fault("pb_token", handler, default_body)

    # ------------------------------------------------------------------------ Pitney Bowes shipping
    def pb_default_body(request: Request) -> Callable[[int], tuple[str, str]]:
        def default_body(status: int) -> tuple[str, str]:
            if status < 400:  # 2xx/3xx: no body unless one is given
                return "", JSON
            if _is_gateway_status(status):
                return html_page(status), HTML
            code, description = _PB_ERRORS.get(status, ("PB-ERROR", "Error"))
            if status == 401:
                return dumps(_pb_unified(code, description)), JSON
            return dumps(_pb_error_doc(_wants_unified(request), code, description)), JSON

        return default_body

    def pb_authorize(request: Request) -> IssuedToken | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _pb_unauthorized("PB-APIM-ERR-1002", "Missing or malformed Authorization header")
        issued = sandbox.pb_lookup_token(token.strip())
        if issued is None:
            return _pb_unauthorized()
        return issued

    def pb_merchant_check(request: Request, issued: IssuedToken) -> Response | None:
        developer_id = request.path_params["developer_id"]
        prn = request.path_params["prn"]
        if developer_id != issued.developer_id:
            return _pb_error(request, 403, "1000033", "Unauthorized API access for given credentials")
        view = sandbox.pb_merchant_view(prn)
        if view is None or (view.developer_id is not None and view.developer_id != developer_id):
            return _pb_error(
                request, 404, "PB-RESOURCE-NOT-FOUND", f"Merchant with postalReportingNumber {prn} not found"
            )
        return None

    balance_path = "/shippingservices/v1/developers/{developer_id}/merchants/{prn}/account-balance"

    @app.get(balance_path, tags=["pitney-bowes"])
    async def pb_balance(request: Request) -> Response:
        async def handler() -> Response:
            issued = pb_authorize(request)
            if isinstance(issued, Response):
                return issued
            refused = pb_merchant_check(request, issued)
            if refused is not None:
                return refused
            view = sandbox.pb_merchant_view(request.path_params["prn"])
            if view is None:  # removed in between
                return _pb_error(request, 404, "PB-RESOURCE-NOT-FOUND", "Merchant not found")
            accounts: list[dict[str, Any]] = [
                {
                    "accountType": "Postage Account",
                    "accountNumber": view.account_number,
                    "currencyCode": view.currency_code,
                    "availableBalance": view.available_balance,
                }
            ]
            loc = view.line_of_credit
            if loc is not None:
                accounts.append(
                    {
                        "accountType": "PB Line of Credit",
                        "accountNumber": loc.account_number,
                        "currencyCode": loc.currency_code,
                        "balanceOwed": loc.balance_owed,
                        "availableCredit": loc.available_credit,
                        "creditLimit": loc.credit_limit,
                        "minimumAmountDue": loc.minimum_amount_due,
                        "minimumDueDate": loc.minimum_due_date,
                    }
                )
            return _json(200, {"accounts": accounts})

        return await with_fault("pb_balance", handler, pb_default_body(request))

    fund_path = "/shippingservices/v1/developers/{developer_id}/merchants/{prn}/account/fund"

    @app.post(fund_path, tags=["pitney-bowes"])
    async def pb_fund(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            issued = pb_authorize(request)
            if isinstance(issued, Response):
                return issued
            refused = pb_merchant_check(request, issued)
            if refused is not None:
                return refused
            prn = request.path_params["prn"]
            view = sandbox.pb_merchant_view(prn)
            if view is None:  # removed in between
                return _pb_error(request, 404, "PB-RESOURCE-NOT-FOUND", "Merchant not found")
            if not view.fund_enabled:
                return _pb_error(
                    request, 403, "PB-ACCOUNT-NOT-ENABLED", "The account is not enabled for this operation"
                )
            transaction_id = request.headers.get("x-pb-transactionid")
            if transaction_id is None or not TRANSACTION_ID_RE.match(transaction_id):
                return _pb_error(
                    request,
                    400,
                    "PB-INVALID-TRANSACTION-ID",
                    "X-PB-TransactionId is required: 1 to 25 letters, digits, '-' or '_'",
                )
            try:
                fund = validate_fund_body(raw)
            except RuleError as exc:
                return _pb_error(request, 400, exc.code, exc.description)
            result = sandbox.pb_fund(prn, fund.amount, fund.currency_code, transaction_id)
            if result.outcome == "insufficient_credit":
                return _pb_error(
                    request,
                    400,
                    "PB-INSUFFICIENT-CREDIT",
                    f"Insufficient credit: requested {fund.amount}, available {result.available_credit}",
                )
            if result.outcome == "duplicate_rejected":
                return _pb_error(
                    request,
                    400,
                    "PB-DUPLICATE-TRANSACTION",
                    f"Duplicate transaction id {transaction_id}",
                )
            refill = result.refill
            assert refill is not None
            return _json(200, {"amount": int(refill.amount), "currencyCode": refill.currency_code})

        return await with_fault("pb_fund", handler, pb_default_body(request))

    _add_control_routes(app, sandbox)
    return app


def _c2m_purchase_success(shape: str) -> str:
    if shape == "declaration_only":
        return XML_DECLARATION
    if shape == "description":
        return f"{XML_DECLARATION}\n<credit>\n    <description>Success</description>\n</credit>\n"
    return (
        f"{XML_DECLARATION}\n<credit>\n    <status>0</status>\n    <description>Success</description>\n"
        "    <statusUrl></statusUrl>\n    <balance></balance>\n    <allowNegative>false</allowNegative>\n"
        "</credit>\n"
    )


def _fault_response(
    endpoint: str,
    fault: Fault,
    reply: Response | None,
    default_body: Callable[[int], tuple[str, str]],
) -> Response:
    if fault.status is not None or fault.body is not None:
        status = fault.status if fault.status is not None else 200
        if fault.body is not None:
            body = fault.body
            content_type = fault.content_type if fault.content_type is not None else _DROP_STUBS[endpoint][1]
        else:
            body, content_type = default_body(status)
            if fault.content_type is not None:
                content_type = fault.content_type
        response = _response(status, body, content_type)
    elif reply is not None:
        response = reply
    elif fault.wire == "oversize":  # request not processed: a padding-only document
        response = _response(200, "", _DROP_STUBS[endpoint][1])
    else:  # drop / wire fault without status/body, request not processed
        stub, content_type = _DROP_STUBS[endpoint]
        response = _response(200, stub, content_type)
    if fault.wire == "oversize":
        response = _oversized(response)
    for name, value in fault.headers:
        response.headers[name] = value
    if fault.drop:
        response.headers[DROP_MARKER_HEADER] = "1"
    if fault.wire is not None:
        marker = f"trickle; interval={fault.trickle_interval!r}" if fault.wire == "trickle" else fault.wire
        response.headers[WIRE_MARKER_HEADER] = marker
    return response


def _padded(text: str, content_type: str) -> str:
    """``text`` with about 1.5 MiB of padding that keeps it a document of ``content_type``."""
    filler = padding_text()
    media = content_type.split(";")[0].strip().lower()
    stripped = text.strip()
    if media.endswith("json"):
        if stripped.startswith("{") and stripped.endswith("}"):
            inner = stripped[1:-1].strip()
            return "{" + (inner + "," if inner else "") + f'"padding":"{filler}"' + "}"
        if stripped.startswith("[") and stripped.endswith("]"):
            inner = stripped[1:-1].strip()
            return "[" + (inner + "," if inner else "") + f'{{"padding":"{filler}"}}' + "]"
        if not stripped:
            return f'{{"padding":"{filler}"}}'
        return f"{text}\n{filler}"
    if not stripped and media.endswith("xml"):
        return f"{XML_DECLARATION}\n<padding>{filler}</padding>\n"
    separator = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{separator}<!-- {filler} -->\n"


def _oversized(response: Response) -> Response:
    content_type = response.headers.get("content-type") or JSON
    text = bytes(response.body).decode("utf-8", errors="replace")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return _response(response.status_code, _padded(text, content_type), content_type, headers)


# --------------------------------------------------------------------------------------------
# Control routes
# --------------------------------------------------------------------------------------------
async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = loads(raw)
    except ValueError:
        raise InvalidSettingError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidSettingError("the body must be a JSON object")
    return data


def _only(data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidSettingError(f"unknown fields {unknown}; allowed: {sorted(allowed)}")
    return data


_C2M_ACCOUNT_FIELDS = {"balance", "allow_negative", "environment", "password"}
_PB_MERCHANT_FIELDS = {
    "available_balance",
    "fund_enabled",
    "balance_owed",
    "available_credit",
    "credit_limit",
    "minimum_amount_due",
    "minimum_due_date",
}


def _add_control_routes(app: FastAPI, sandbox: SandboxState) -> None:
    async def sandbox_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, UnknownEntityError) else 400
        return _json(status, {"error": str(exc)})

    app.add_exception_handler(SandboxError, sandbox_error)

    def c2m_account(username: str) -> dict[str, Any]:
        accounts: dict[str, Any] = sandbox.snapshot()["c2m"]["accounts"]
        return {"username": username, **accounts[username]}

    def pb_merchant(prn: str) -> dict[str, Any]:
        merchants: dict[str, Any] = sandbox.snapshot()["pb"]["merchants"]
        return {"prn": prn, **merchants[prn]}

    @app.get("/_sandbox/state", tags=["sandbox"])
    async def get_state() -> Response:
        return _json(200, sandbox.snapshot())

    @app.post("/_sandbox/reset", tags=["sandbox"])
    async def reset() -> Response:
        sandbox.reset()
        return _json(200, sandbox.snapshot())

    @app.post("/_sandbox/c2m/accounts/{username}", tags=["sandbox"])
    async def set_c2m_account(request: Request, username: str) -> Response:
        data = _only(await _json_object(request), _C2M_ACCOUNT_FIELDS)
        sandbox.set_c2m_account(username, **data)
        return _json(200, c2m_account(username))

    @app.post("/_sandbox/c2m/accounts/{username}/drain", tags=["sandbox"])
    async def drain_c2m(request: Request, username: str) -> Response:
        data = _only(await _json_object(request), {"rate_per_second"})
        sandbox.drain_c2m(username, data.get("rate_per_second", 0))
        return _json(200, c2m_account(username))

    @app.post("/_sandbox/pb/merchants/{prn}", tags=["sandbox"])
    async def set_pb_merchant(request: Request, prn: str) -> Response:
        data = _only(await _json_object(request), _PB_MERCHANT_FIELDS)
        sandbox.set_pb_merchant(prn, **data)
        return _json(200, pb_merchant(prn))

    @app.post("/_sandbox/pb/merchants/{prn}/drain", tags=["sandbox"])
    async def drain_pb(request: Request, prn: str) -> Response:
        data = _only(await _json_object(request), {"rate_per_second"})
        sandbox.drain_pb(prn, data.get("rate_per_second", 0))
        return _json(200, pb_merchant(prn))

    @app.get("/_sandbox/faults", tags=["sandbox"])
    async def get_faults() -> Response:
        return _json(200, {k: [f.to_mapping() for f in v] for k, v in sandbox.pending_faults().items()})

    @app.post("/_sandbox/faults", tags=["sandbox"])
    async def add_fault(request: Request) -> Response:
        data = await _json_object(request)
        endpoint = data.pop("endpoint", None)
        times = data.pop("times", 1)
        after = data.pop("after", 0)
        fault = Fault.from_mapping(data)
        sandbox.inject_fault(endpoint, fault, times=times, after=after)
        pending = sandbox.pending_faults()[endpoint]
        return _json(200, {"endpoint": endpoint, "pending": len(pending), "fault": fault.to_mapping()})

    @app.delete("/_sandbox/faults", tags=["sandbox"])
    async def clear_faults(endpoint: str | None = None) -> Response:
        sandbox.clear_faults(endpoint)  # type: ignore[arg-type]
        return _json(200, {"cleared": endpoint or "all"})

    @app.get("/_sandbox/counters", tags=["sandbox"])
    async def get_counters() -> Response:
        return _json(200, sandbox.counters())

    @app.post("/_sandbox/counters/reset", tags=["sandbox"])
    async def reset_counters() -> Response:
        sandbox.reset_counters()
        return _json(200, sandbox.counters())

    @app.get("/_sandbox/settings", tags=["sandbox"])
    async def get_settings() -> Response:
        return _json(200, sandbox.settings())

    @app.post("/_sandbox/settings", tags=["sandbox"])
    async def set_settings(request: Request) -> Response:
        return _json(200, sandbox.update_settings(await _json_object(request)))

    @app.post("/_sandbox/tokens/expire", tags=["sandbox"])
    async def expire_tokens() -> Response:
        return _json(200, {"expired": sandbox.expire_tokens()})
