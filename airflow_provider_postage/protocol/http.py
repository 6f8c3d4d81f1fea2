"""What goes over the wire, described as plain data: built by the protocol modules, sent by the hook
(requests) or the trigger (httpx), parsed back by the protocol modules."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_postage.protocol.errors import PostageConfigError

#: Replies larger than this are refused unread: no balance or purchase reply comes near it.
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpRequest:
    """One request. Headers and body carry credentials, so they stay out of ``repr``."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = field(default=None, repr=False)
    #: True for calls that move money: never resent once they may have reached the server.
    moves_money: bool = False


@dataclass(frozen=True)
class HttpResponse:
    """One reply, with header names lower-cased."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def normalize_base_url(url: str, *, field_name: str = "host") -> str:
    """Validate a configured base URL (scheme and host present, no query) and drop a trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostageConfigError(field_name, "must be an http(s) URL with a host name")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise PostageConfigError(field_name, "must not contain a query, fragment or credentials")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise PostageConfigError(field_name, "has an invalid port") from None
    return url.rstrip("/")


def verify_tls(value: object) -> bool:
    """The ``verify_ssl`` extra: on unless a connection turns it off explicitly (a private endpoint)."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise PostageConfigError("verify_ssl", "must be true or false")


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: credentials may only be sent where the configured host points."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port
