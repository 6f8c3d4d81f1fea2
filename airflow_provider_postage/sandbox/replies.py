"""HTTP helpers shared by both emulated APIs (replies, Basic credentials), and how a queued
:class:`~.faults.Fault` changes a reply.

:class:`FaultRunner` wraps every API route: it counts the call (``SandboxState.begin_call``), takes its
next queued fault and answers with the normal reply, a faulted one (status / body / delay), or a reply
marked for :class:`~.wire.WireMiddleware` to break on the wire (``drop``, ``wire``).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from .faults import Endpoint, Fault
from .jsonio import dumps
from .wire import DROP_MARKER_HEADER, WIRE_MARKER_HEADER, interruptible_sleep, padding_text

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = [
    "HTML",
    "JSON",
    "XML",
    "XML_DECLARATION",
    "DefaultBody",
    "FaultRunner",
    "basic_credentials",
    "html_page",
    "json_response",
    "response",
]

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
XML = "application/xml"
JSON = "application/json"
HTML = "text/html"

#: ``status -> (body, content type)``: an API's realistic body for a faulted status without a body.
DefaultBody = Callable[[int], tuple[str, str]]


def response(status: int, body: str, content_type: str | None, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=content_type or None, headers=headers)


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    """``obj`` as compact JSON (Decimal amounts as exact numbers)."""
    return response(status, dumps(obj), JSON, headers)


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


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """``(user, password)`` of a well-formed ``Authorization: Basic`` header, else None."""
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


class FaultRunner:
    """Runs API route handlers under the faults queued for their endpoint.

    ``stubs`` maps each endpoint to ``(start of a normal reply, content type)``: what a ``drop`` or
    ``wire`` fault sends when the request is not processed, and the content type of a fault body.
    ``stopping`` cuts fault delays short when the server stops.
    """

    def __init__(self, sandbox: SandboxState, stopping: threading.Event, stubs: Mapping[str, tuple[str, str]]) -> None:
        self._sandbox = sandbox
        self._stopping = stopping
        self._stubs = dict(stubs)

    async def run(
        self, endpoint: Endpoint, handler: Callable[[], Awaitable[Response]], default_body: DefaultBody
    ) -> Response:
        fault = self._sandbox.begin_call(endpoint)
        if fault is None:
            return await handler()
        reply: Response | None = None
        if fault.apply:
            reply = await handler()
            if fault.delay:
                await interruptible_sleep(fault.delay, self._stopping)
        else:
            if fault.delay:
                await interruptible_sleep(fault.delay, self._stopping)
            if not fault.replaces_reply:
                reply = await handler()
        return self._faulted(endpoint, fault, reply, default_body)

    def _faulted(self, endpoint: str, fault: Fault, reply: Response | None, default_body: DefaultBody) -> Response:
        stub, stub_type = self._stubs[endpoint]
        if fault.status is not None or fault.body is not None:
            status = fault.status if fault.status is not None else 200
            if fault.body is not None:
                body = fault.body
                content_type = fault.content_type if fault.content_type is not None else stub_type
            else:
                body, content_type = default_body(status)
                if fault.content_type is not None:
                    content_type = fault.content_type
            result = response(status, body, content_type)
        elif reply is not None:
            result = reply
        elif fault.wire == "oversize":  # request not processed: a padding-only document
            result = response(200, "", stub_type)
        else:  # drop / wire fault without status/body, request not processed
            result = response(200, stub, stub_type)
        if fault.wire == "oversize":
            result = _oversized(result)
        for name, value in fault.headers:
            result.headers[name] = value
        if fault.drop:
            result.headers[DROP_MARKER_HEADER] = "1"
        if fault.wire is not None:
            marker = f"trickle; interval={fault.trickle_interval!r}" if fault.wire == "trickle" else fault.wire
            result.headers[WIRE_MARKER_HEADER] = marker
        return result


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


def _oversized(reply: Response) -> Response:
    content_type = reply.headers.get("content-type") or JSON
    text = bytes(reply.body).decode("utf-8", errors="replace")
    headers = {k: v for k, v in reply.headers.items() if k.lower() not in ("content-length", "content-type")}
    return response(reply.status_code, _padded(text, content_type), content_type, headers)
