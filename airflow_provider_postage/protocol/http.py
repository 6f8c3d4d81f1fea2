"""What goes over the wire, described as plain data: built by the protocol modules, sent by the hook
(requests) or the trigger (aiohttp), parsed back by the protocol modules."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
        return self.body.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a BOM is no content


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def normalize_base_url(url: str, *, port: object = None, scheme: str | None = None, field_name: str = "host") -> str:
    """Validate a configured base URL (scheme and host present, no query) and drop a trailing slash.

    A host without a scheme takes ``scheme`` (a connection's Schema field, when it says http or https)
    or https; the connection's own Port field is added when the host names none."""
    url = url.strip()
    if "://" not in url:
        url = f"{scheme if scheme in ('http', 'https') else 'https'}://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostageConfigError(field_name, "must be an http(s) URL with a host name")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise PostageConfigError(field_name, "must not contain a query, fragment or credentials")
    try:
        own_port = parts.port
    except ValueError:
        raise PostageConfigError(field_name, "has an invalid port") from None
    if port not in (None, ""):
        try:
            number = int(str(port))
        except ValueError:
            number = 0
        if not 0 < number < 65536:
            raise PostageConfigError("port", "must be a number from 1 to 65535")
        if own_port is None:
            parts = parts._replace(netloc=f"{parts.netloc}:{number}")
        elif own_port != number:
            raise PostageConfigError("port", f"is {number}, but the host names port {own_port}")
    return urlunsplit(parts).rstrip("/")


def extra_value(extra: Mapping[str, Any], conn_type: str, name: str) -> Any:
    """An extra by its bare name, else in the ``extra__<conn_type>__<name>`` form older UIs stored."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{conn_type}__{name}")
    return value


def endpoint(
    environment: object, urls: Mapping[str, str], default: str, host: str | None, *, port: object, scheme: str | None
) -> tuple[str, str]:
    """The environment a connection names and its base URL (the host, when set, overrides the
    environment's); plain HTTP is refused for production."""
    name = str(environment or default).strip().lower()
    if name not in urls:
        raise PostageConfigError("environment", f"must be one of {', '.join(urls)}")
    base_url = normalize_base_url(host, port=port, scheme=scheme) if host else urls[name]
    refuse_plain_http(base_url, name)
    return name, base_url


def is_plain_http(url: str) -> bool:
    return url.lower().startswith("http://")


def refuse_plain_http(url: str, environment: str, *, field_name: str = "host") -> None:
    """Production credentials and cards never travel in clear; staging and sandbox hosts may (the
    hooks warn)."""
    if environment == "production" and is_plain_http(url):
        raise PostageConfigError(
            field_name, "plain http:// is refused for production (credentials would travel in clear); use https://"
        )


def verify_tls(value: object, ca_bundle: object = None) -> bool | str:
    """The ``verify_ssl`` and ``ca_bundle`` extras: verification on unless a connection turns it off
    explicitly (a private endpoint); against the system's CAs, or those of a PEM file (a private CA, a
    TLS-inspecting proxy) named by ``ca_bundle`` or, as requests takes it, by ``verify_ssl`` itself."""
    bundle = str(ca_bundle).strip() if ca_bundle not in (None, "") else None
    if bundle is not None and not os.path.isfile(bundle):
        raise PostageConfigError("ca_bundle", "must be the path of an existing CA bundle file (PEM)")
    if value is None or value == "":
        return bundle or True
    if isinstance(value, bool):
        return (bundle or True) if value else False
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes", "on"):
        return bundle or True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    if os.path.isfile(text):
        return text
    raise PostageConfigError("verify_ssl", "must be true, false or the path of an existing CA bundle file")
