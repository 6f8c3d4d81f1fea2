"""Click2Mail routes of the sandbox (Basic auth, XML replies).

* ``GET  /molpro/credit`` -> 200 XML ``<credit><balance>5.0</balance><allowNegative>…``;
  bad or missing credentials -> 401 ``text/html``.
* ``POST /molpro/credit/purchase`` (form body with the 11 billing parameters) -> 200 XML in the shape
  the ``c2m_purchase_reply`` setting selects; rule failures (:mod:`.rules`) -> 400 XML
  ``<status>9</status><description>…``.

Fault endpoints: ``c2m_credit``, ``c2m_purchase``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import RuleError, UnknownEntityError
from ..replies import HTML, XML, XML_DECLARATION, FaultRunner, basic_credentials, html_page, response
from .rules import c2m_balance_text, validate_c2m_purchase

if TYPE_CHECKING:
    from ..state import SandboxState

__all__ = ["STUBS", "router"]

#: Start of each endpoint's normal reply (what a ``drop`` / ``wire`` fault sends) and its content type.
STUBS: dict[str, tuple[str, str]] = {
    "c2m_credit": (f"{XML_DECLARATION}\n<credit>\n    <balance>", XML),
    "c2m_purchase": (f"{XML_DECLARATION}\n<credit>\n    <status>", XML),
}

_DESCRIPTIONS = {
    400: "Invalid input data",
    403: "Access denied",
    404: "Resource not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
    500: "An unexpected error has occurred. Please try again later.",
}


def _status9(description: str) -> str:
    return (
        f"{XML_DECLARATION}\n<credit>\n    <status>9</status>\n"
        f"    <description>{escape(description)}</description>\n</credit>\n"
    )


def _unauthorized() -> Response:
    return response(401, html_page(401), HTML, {"WWW-Authenticate": 'Basic realm="Click2Mail"'})


def _fault_default(status: int) -> tuple[str, str]:
    if status < 400:  # 2xx/3xx: no body unless one is given
        return "", XML
    if status == 401:
        return html_page(401), HTML
    if status <= 500:
        return _status9(_DESCRIPTIONS.get(status, "Error")), XML
    return html_page(status), HTML


def _purchase_success(shape: str) -> str:
    if shape == "declaration_only":
        return XML_DECLARATION
    if shape == "description":
        return f"{XML_DECLARATION}\n<credit>\n    <description>Success</description>\n</credit>\n"
    return (
        f"{XML_DECLARATION}\n<credit>\n    <status>0</status>\n    <description>Success</description>\n"
        "    <statusUrl></statusUrl>\n    <balance></balance>\n    <allowNegative>false</allowNegative>\n"
        "</credit>\n"
    )


def router(sandbox: SandboxState, calls: FaultRunner) -> APIRouter:
    """The Click2Mail routes over ``sandbox``, each run under its endpoint's faults by ``calls``."""
    routes = APIRouter(tags=["click2mail"])

    def c2m_user(request: Request) -> str | None:
        creds = basic_credentials(request)
        if creds is None or not sandbox.c2m_check_credentials(*creds):
            return None
        return creds[0]

    @routes.get("/molpro/credit")
    async def c2m_credit(request: Request) -> Response:
        async def handler() -> Response:
            user = c2m_user(request)
            if user is None:
                return _unauthorized()
            try:
                balance, allow_negative = sandbox.c2m_credit(user)
            except UnknownEntityError:
                return _unauthorized()
            body = (
                f"{XML_DECLARATION}\n<credit>\n    <balance>{c2m_balance_text(balance)}</balance>\n"
                f"    <allowNegative>{'true' if allow_negative else 'false'}</allowNegative>\n</credit>\n"
            )
            return response(200, body, XML)

        return await calls.run("c2m_credit", handler, _fault_default)

    @routes.post("/molpro/credit/purchase")
    async def c2m_purchase(request: Request) -> Response:
        raw = await request.body()

        async def handler() -> Response:
            user = c2m_user(request)
            if user is None:
                return _unauthorized()
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            form: dict[str, str] = {}
            if content_type == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
            try:
                checked = validate_c2m_purchase(form, sandbox.c2m_environment(user), sandbox.today())
            except RuleError as exc:
                return response(400, _status9(exc.description), XML)
            except UnknownEntityError:
                return _unauthorized()
            sandbox.c2m_apply_purchase(user, checked.amount, checked.card_number)
            return response(200, _purchase_success(sandbox.c2m_purchase_reply), XML)

        return await calls.run("c2m_purchase", handler, _fault_default)

    return routes
