"""Asynchronous balance reads for triggers: the same protocol functions as the sync hooks, sent with
httpx on the triggerer's event loop, never blocking it.

Everything per process is shared, because one triggerer loop may carry thousands of triggers: one
httpx client per loop (a connection pool), one Pitney Bowes token per set of credentials (``TOKENS``),
and one request in flight per account (concurrent polls of the same account wait for it)."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pendulum
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_postage import _conditions
from airflow_provider_postage._tokens import TOKENS
from airflow_provider_postage._transport import DEFAULT_TIMEOUT, Verify, asend, ssl_context
from airflow_provider_postage.protocol import click2mail as c2m
from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse
from airflow_provider_postage.protocol.records import CREDIT, POSTAGE, Balance

if TYPE_CHECKING:
    import httpx

Settings = c2m.Click2MailSettings | pb.PitneyBowesSettings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Verify, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[list[Balance]]]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(verify: Verify = True) -> httpx.AsyncClient:
    """The loop's one client (per TLS setting): thousands of triggers share its connection pool."""
    import httpx

    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(verify)
    if client is None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
        client = clients[verify] = httpx.AsyncClient(trust_env=False, limits=limits, verify=ssl_context(verify))
    return client


async def load_settings(conn_id: str) -> Settings:
    """Read and validate a connection without blocking the loop; secrets go to the masker at once."""
    conn = await get_async_connection(conn_id)
    extra = await get_async_extra_dejson(conn)
    if conn.password:
        mask_secret(conn.password)
    if conn.conn_type == "click2mail":
        for name in c2m.SECRET_EXTRAS:
            if value := extra.get(name) or extra.get(f"extra__click2mail__{name}"):
                mask_secret(str(value))
        return c2m.settings_from_connection(
            conn.login, conn.password, conn.host, extra, port=conn.port, schema=conn.schema
        )
    if conn.conn_type == "pitney_bowes":
        return pb.settings_from_connection(
            conn.login, conn.password, conn.host, extra, port=conn.port, schema=conn.schema
        )
    raise PostageConfigError(
        "conn_type", f"connection {conn_id!r} has type {conn.conn_type!r}; expected click2mail or pitney_bowes"
    )


def _account_key(settings: Settings) -> str:
    if isinstance(settings, pb.PitneyBowesSettings):
        return f"{settings.credential_key}:{settings.merchant_url}"
    secret = hashlib.sha256(f"{settings.username}\0{settings.password}".encode()).hexdigest()
    return f"{settings.base_url}:{secret}"


async def _pb_token(settings: pb.PitneyBowesSettings, send: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> str:
    async def fetch() -> pb.Token:
        token = pb.parse_token_response(await send(pb.build_token_request(settings)))
        mask_secret(token.access_token)
        return token

    return await TOKENS.aget(settings.credential_key, fetch)


async def _read(settings: Settings, conn_id: str, timeout: tuple[float, float]) -> list[Balance]:
    client = shared_client(settings.verify)

    async def send(request: HttpRequest) -> HttpResponse:
        return await asend(client, request, timeout=timeout)

    if isinstance(settings, c2m.Click2MailSettings):
        reply = await send(c2m.build_balance_request(settings))
        return [c2m.parse_balance_response(reply, conn_id=conn_id, received_at=pendulum.now("UTC"))]
    token = await _pb_token(settings, send)
    reply = await send(pb.build_balance_request(settings, token))
    if reply.status == 401:  # expired or revoked: one new token, one more try
        TOKENS.invalidate(settings.credential_key, token)
        reply = await send(pb.build_balance_request(settings, await _pb_token(settings, send)))
    return pb.parse_balance_response(reply, conn_id=conn_id, received_at=pendulum.now("UTC"))


async def read_balances(
    settings: Settings, conn_id: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> list[Balance]:
    """One attempt (the caller's poll loop is the retry). Polls of the same account that overlap share
    one request; each caller gets the balances relabelled with its own connection id."""
    loop = asyncio.get_running_loop()
    pending = _inflight.setdefault(loop, {})
    key = _account_key(settings)
    future = pending.get(key)
    if future is None:
        future = pending[key] = asyncio.ensure_future(_read(settings, conn_id, timeout))

        def forget(done: asyncio.Future[list[Balance]]) -> None:
            pending.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved here so an error nobody awaited any more is not logged as lost

        future.add_done_callback(forget)
    balances = await asyncio.shield(future)
    if balances and balances[0].conn_id != conn_id:
        from dataclasses import replace

        balances = [replace(balance, conn_id=conn_id) for balance in balances]
    return balances


async def read_balance(
    settings: Settings, conn_id: str, account_type: str | None, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> Balance:
    """One account's balance (the connection's main account when ``account_type`` is None)."""
    main = CREDIT if isinstance(settings, c2m.Click2MailSettings) else POSTAGE
    return _conditions.pick(await read_balances(settings, conn_id, timeout=timeout), account_type, main)
