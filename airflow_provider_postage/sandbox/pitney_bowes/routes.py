"""Pitney Bowes routes of the sandbox (paths as on ``shipping-api*.pitneybowes.com``).

* ``POST /oauth/token`` (Basic key:secret, form ``grant_type=client_credentials``) -> 200 JSON token;
  bad credentials -> 401 ``[{"errorCode":"1000032",…}]``; other grant/body -> 400 same shape.

The shipping routes take ``Authorization: Bearer <token>``; ``{developerId}`` must be the token's
developer (else 403 ``1000033``) and ``{prn}`` one of its merchants (else 404 ``PB-RESOURCE-NOT-FOUND``).
A missing or malformed Bearer header is 401 ``PB-APIM-ERR-1002``, an unknown or expired token 401
``PB-APIM-ERR-1003``. Error shapes: :mod:`.replies`; error codes of bodies and queries: :mod:`.rules`.

* ``GET  /shippingservices/v1/developers/{developerId}/merchants/{prn}/account-balance``
  -> ``{"accounts": [postage account, PB Line of Credit when the merchant has one]}``.
* ``POST /shippingservices/v1/developers/{developerId}/merchants/{prn}/account/fund``
  (``X-PB-TransactionId``, ``{"amount": <int>, "currencyCode": "USD"}``) -> the same body; 403
  ``PB-ACCOUNT-NOT-ENABLED``, 400 ``PB-INVALID-TRANSACTION-ID`` / ``1000050`` / ``PB-INVALID-CURRENCY``
  / ``PB-INSUFFICIENT-CREDIT`` / ``PB-DUPLICATE-TRANSACTION``.
* ``GET | POST /shippingservices/v1/developers/{developerId}/merchants/{prn}/autorefillrule``
  -> ``{"merchantID": prn, "threshold": number|null, "addAmount": integer|null, "enabled": bool}``.
  POST takes the same body; a field left out is null, and a rule without threshold or addAmount is
  not enabled. 400 ``PB-INVALID-MERCHANT-ID`` (merchantID not the path's) / ``1000050``; POST on a
  merchant not enabled for funding: 403 ``PB-ACCOUNT-NOT-ENABLED``. How the sandbox applies the rule:
  :mod:`.ledger`.
* ``GET /shippingservices/v4/ledger/developers/{developerId}/transactions/reports?fromDate=…&toDate=…``
  ``[&transactionType=POSTAGE FUND][&merchantId=prn][&page=0][&size=20]`` -> a Spring page
  ``{"content": [{"transactionId", "transactionDateTime", "transactionType", "developerId",
  "merchantId", "postageDepositAmount", "creditCardFee", "description"}], "totalElements",
  "totalPages", "number", "size", "numberOfElements", "first", "last"}``, oldest first. Every refill
  (manual or automatic) is a ``POSTAGE FUND`` entry. 400 ``PB-INVALID-PARAMETER`` /
  ``PB-INVALID-DATE-RANGE`` (``fromDate`` after ``toDate`` or more than 6 months ago).

Fault endpoints: ``pb_token``, ``pb_balance``, ``pb_fund``, ``pb_autorefill_get``,
``pb_autorefill_set``, ``pb_transactions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import RuleError, UnknownEntityError
from ..replies import FaultRunner, basic_credentials, json_response
from .records import IssuedToken
from .replies import (
    authorize,
    default_body,
    developer_check,
    error,
    merchant_check,
    token_default_body,
    token_error_doc,
)
from .rules import (
    TRANSACTION_ID_RE,
    spring_page,
    validate_autorefill_body,
    validate_fund_body,
    validate_report_query,
)

if TYPE_CHECKING:
    from ..state import SandboxState

__all__ = ["router"]

_MERCHANT = "/shippingservices/v1/developers/{developer_id}/merchants/{prn}"
_REPORTS = "/shippingservices/v4/ledger/developers/{developer_id}/transactions/reports"


def router(sandbox: SandboxState, calls: FaultRunner) -> APIRouter:
    """The Pitney Bowes routes over ``sandbox``, each run under its endpoint's faults by ``calls``."""
    routes = APIRouter(tags=["pitney-bowes"])

    def merchant_access(request: Request) -> IssuedToken | Response:
        """The token's grant when it may act on the path's merchant, else the refusal."""
        issued = authorize(sandbox, request)
        if isinstance(issued, Response):
            return issued
        return merchant_check(sandbox, request, issued, request.path_params["prn"]) or issued

    def not_found(request: Request) -> Response:  # the merchant was replaced in between
        return error(request, 404, "PB-RESOURCE-NOT-FOUND", "Merchant not found")

    def not_enabled(request: Request) -> Response:
        return error(request, 403, "PB-ACCOUNT-NOT-ENABLED", "The account is not enabled for this operation")

    @routes.post("/oauth/token")
    async def pb_token(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            creds = basic_credentials(request)
            if creds is None or not sandbox.pb_check_credentials(*creds):
                return json_response(401, token_error_doc("1000032", "Authentication error"))
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            form: dict[str, str] = {}
            if content_type == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
            if form.get("grant_type") != "client_credentials":
                doc = token_error_doc("1000004", "Invalid grant_type: expected client_credentials")
                return json_response(400, doc)
            issued = sandbox.pb_issue_token(*creds)
            if issued is None:  # credentials removed in between
                return json_response(401, token_error_doc("1000032", "Authentication error"))
            return json_response(
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

        return await calls.run("pb_token", handler, token_default_body)

    @routes.get(_MERCHANT + "/account-balance")
    async def pb_balance(request: Request) -> Response:
        async def handler() -> Response:
            access = merchant_access(request)
            if isinstance(access, Response):
                return access
            view = sandbox.pb_merchant_view(request.path_params["prn"])
            if view is None:
                return not_found(request)
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
            return json_response(200, {"accounts": accounts})

        return await calls.run("pb_balance", handler, default_body(request))

    @routes.post(_MERCHANT + "/account/fund")
    async def pb_fund(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            access = merchant_access(request)
            if isinstance(access, Response):
                return access
            prn = request.path_params["prn"]
            try:
                if not sandbox.pb_fund_enabled(prn):
                    return not_enabled(request)
            except UnknownEntityError:
                return not_found(request)
            transaction_id = request.headers.get("x-pb-transactionid")
            if transaction_id is None or not TRANSACTION_ID_RE.match(transaction_id):
                return error(
                    request,
                    400,
                    "PB-INVALID-TRANSACTION-ID",
                    "X-PB-TransactionId is required: 1 to 25 letters, digits, '-' or '_'",
                )
            try:
                fund = validate_fund_body(raw)
            except RuleError as exc:
                return error(request, 400, exc.code, exc.description)
            result = sandbox.pb_fund(prn, fund.amount, fund.currency_code, transaction_id)
            if result.outcome == "insufficient_credit":
                description = f"Insufficient credit: requested {fund.amount}, available {result.available_credit}"
                return error(request, 400, "PB-INSUFFICIENT-CREDIT", description)
            if result.outcome == "duplicate_rejected":
                return error(request, 400, "PB-DUPLICATE-TRANSACTION", f"Duplicate transaction id {transaction_id}")
            refill = result.refill
            assert refill is not None
            return json_response(200, {"amount": int(refill.amount), "currencyCode": refill.currency_code})

        return await calls.run("pb_fund", handler, default_body(request))

    @routes.get(_MERCHANT + "/autorefillrule")
    async def pb_autorefill_get(request: Request) -> Response:
        async def handler() -> Response:
            access = merchant_access(request)
            if isinstance(access, Response):
                return access
            try:
                rule = sandbox.pb_autorefill_rule(request.path_params["prn"])
            except UnknownEntityError:
                return not_found(request)
            return json_response(200, rule.to_api())

        return await calls.run("pb_autorefill_get", handler, default_body(request))

    @routes.post(_MERCHANT + "/autorefillrule")
    async def pb_autorefill_set(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            access = merchant_access(request)
            if isinstance(access, Response):
                return access
            prn = request.path_params["prn"]
            try:
                if not sandbox.pb_fund_enabled(prn):
                    return not_enabled(request)
                wanted = validate_autorefill_body(raw, prn)
                rule = sandbox.set_pb_autorefill_rule(
                    prn, threshold=wanted.threshold, add_amount=wanted.add_amount, enabled=wanted.enabled
                )
            except RuleError as exc:
                return error(request, 400, exc.code, exc.description)
            except UnknownEntityError:
                return not_found(request)
            return json_response(200, rule.to_api())

        return await calls.run("pb_autorefill_set", handler, default_body(request))

    @routes.get(_REPORTS)
    async def pb_transactions(request: Request) -> Response:
        async def handler() -> Response:
            issued = authorize(sandbox, request)
            if isinstance(issued, Response):
                return issued
            refused = developer_check(request, issued)
            if refused is not None:
                return refused
            try:
                query = validate_report_query(request.query_params, sandbox.now())
            except RuleError as exc:
                return error(request, 400, exc.code, exc.description)
            if query.merchant_id is not None:
                refused = merchant_check(sandbox, request, issued, query.merchant_id)
                if refused is not None:
                    return refused
            entries = sandbox.pb_transactions(
                prn=query.merchant_id,
                developer_id=issued.developer_id,
                from_time=query.from_time,
                to_time=query.to_time,
                transaction_type=query.transaction_type,
            )
            page = spring_page(entries, query.page, query.size)
            page["content"] = [entry.to_report(issued.developer_id) for entry in page["content"]]
            return json_response(200, page)

        return await calls.run("pb_transactions", handler, default_body(request))

    return routes
