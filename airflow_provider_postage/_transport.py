"""The only places bytes move: :func:`send` (requests, for hooks) and :func:`asend` (httpx, for
triggers). Both send an :class:`HttpRequest` exactly as built, never follow redirects (credentials stay
with the configured host), always time out, cap the reply size, and say whether a failed request may
have reached the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_postage.protocol.errors import PostageTransportError
from airflow_provider_postage.protocol.http import MAX_RESPONSE_BYTES, HttpRequest, HttpResponse

if TYPE_CHECKING:
    import httpx
    import requests

#: (connect, read) seconds. No call may hang a worker or the triggerer's loop.
DEFAULT_TIMEOUT = (10.0, 30.0)


def _where(request: HttpRequest) -> str:
    return f"{request.method} {request.url}"


def _too_large(request: HttpRequest) -> PostageTransportError:
    return PostageTransportError(
        f"{_where(request)}: reply larger than {MAX_RESPONSE_BYTES} bytes, refused", request_sent=True
    )


def send(
    session: requests.Session,
    request: HttpRequest,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    verify: bool = True,
) -> HttpResponse:
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import NameResolutionError, NewConnectionError, ReadTimeoutError

    try:
        with session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            verify=verify,
        ) as reply:
            # One capped read of the raw stream (decoded): the replies are small, and a chunk loop costs
            # more than the read itself.
            body = reply.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            if len(body) > MAX_RESPONSE_BYTES:
                raise _too_large(request)
            headers = {name.lower(): value for name, value in reply.headers.items()}
            return HttpResponse(reply.status_code, headers, body)
    except ReadTimeoutError:
        raise PostageTransportError(f"{_where(request)}: read timeout", request_sent=True) from None
    except Urllib3Error as error:  # the raw read: the reply was cut off or undecodable
        raise PostageTransportError(
            f"{_where(request)}: connection lost ({type(error).__name__})", request_sent=True
        ) from None
    except requests.ConnectTimeout:
        raise PostageTransportError(f"{_where(request)}: connect timeout", request_sent=False) from None
    except requests.exceptions.SSLError:
        raise PostageTransportError(
            f"{_where(request)}: TLS handshake failed (certificate not trusted?)", request_sent=False
        ) from None
    except requests.ConnectionError as error:
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, (NewConnectionError, NameResolutionError)):
            raise PostageTransportError(f"{_where(request)}: connection refused", request_sent=False) from None
        raise PostageTransportError(
            f"{_where(request)}: connection lost ({type(error).__name__})", request_sent=True
        ) from None
    except requests.Timeout:
        raise PostageTransportError(f"{_where(request)}: read timeout", request_sent=True) from None
    except requests.RequestException as error:
        raise PostageTransportError(f"{_where(request)}: {type(error).__name__}", request_sent=True) from None


async def asend(
    client: httpx.AsyncClient,
    request: HttpRequest,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> HttpResponse:
    import httpx

    connect, read = timeout
    try:
        async with client.stream(
            request.method,
            request.url,
            headers=dict(request.headers),
            content=request.body,
            timeout=httpx.Timeout(read, connect=connect),
            follow_redirects=False,
        ) as reply:
            body = bytearray()
            async for chunk in reply.aiter_raw():
                body.extend(chunk)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _too_large(request)
            headers = {name.lower(): value for name, value in reply.headers.items()}
            return HttpResponse(reply.status_code, headers, bytes(body))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
        raise PostageTransportError(f"{_where(request)}: {type(error).__name__}", request_sent=False) from None
    except httpx.TimeoutException:
        raise PostageTransportError(f"{_where(request)}: read timeout", request_sent=True) from None
    except httpx.HTTPError as error:
        raise PostageTransportError(f"{_where(request)}: {type(error).__name__}", request_sent=True) from None
