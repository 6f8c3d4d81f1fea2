"""Hooks for every postage service behind one balance/purchase interface.

Operators, the sensor and the triggers call :func:`get_postage_hook` (or :func:`aget_postage_hook` on an
event loop) with a connection id and never care which API is behind it.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_postage import registry
from airflow_provider_postage._masking import amask_all, parse_extra, secrets_to_mask
from airflow_provider_postage.hooks.base import PostageHook
from airflow_provider_postage.hooks.click2mail import Click2MailHook
from airflow_provider_postage.hooks.pitney_bowes import PitneyBowesHook
from airflow_provider_postage.protocol.errors import PostageError
from airflow_provider_postage.services.base import ConnectionFields, PostageService

__all__ = ["Click2MailHook", "PitneyBowesHook", "PostageHook", "aget_postage_hook", "get_postage_hook", "hook_class"]

_HOOK_CLASSES: dict[str, type[PostageHook]] = {}


def hook_class(service: PostageService) -> type[PostageHook]:
    """The hook class of a service: its own where it has one (named in the provider info for Airflow's
    connection form), else one made for it."""
    candidates: list[type[PostageHook]] = [Click2MailHook, PitneyBowesHook, *PostageHook.__subclasses__()]
    for known in candidates:
        if getattr(known, "service", None) is service:
            return known
    made = _HOOK_CLASSES.get(service.conn_type)
    if made is None or made.service is not service:
        made = _HOOK_CLASSES[service.conn_type] = type(
            f"{type(service).__name__}Hook", (PostageHook,), {"service": service}
        )
    return made


def get_postage_hook(postage_conn_id: str, **hook_kwargs: Any) -> PostageHook:
    """The hook for a connection id, chosen by the connection's type."""
    conn = BaseHook.get_connection(postage_conn_id)
    return hook_class(registry.service_for(conn.conn_type, postage_conn_id))(postage_conn_id, **hook_kwargs)


async def aget_postage_hook(postage_conn_id: str, **hook_kwargs: Any) -> PostageHook:
    """The same on an event loop: the connection is read without blocking it, and once per
    :data:`CONNECTION_TTL` seconds per loop however many triggers ask (a thousand triggers on one
    connection start in a blink, and the secrets masker is fed once, not a thousand times)."""
    conn_type, fields = await _connection_fields(postage_conn_id)
    hook = hook_class(registry.service_for(conn_type, postage_conn_id))(postage_conn_id, **hook_kwargs)
    hook.use_connection(fields)
    return hook


#: Seconds a connection read on an event loop serves further triggers: a changed connection (a rotated
#: secret) is picked up within this time.
CONNECTION_TTL = 30.0
_connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[Any]]]] = (
    weakref.WeakKeyDictionary()
)


async def _connection_fields(conn_id: str) -> tuple[str | None, ConnectionFields]:
    loop = asyncio.get_running_loop()
    cache = _connections.setdefault(loop, {})
    entry = cache.get(conn_id)
    if entry is None or loop.time() - entry[0] >= CONNECTION_TTL or (entry[1].done() and entry[1].exception()):
        entry = cache[conn_id] = (loop.time(), asyncio.ensure_future(_read_connection(conn_id)))
    result: tuple[str | None, ConnectionFields] = await asyncio.shield(entry[1])
    return result


async def _read_connection(conn_id: str) -> tuple[str | None, ConnectionFields]:
    from airflow.providers.common.compat.connection import get_async_connection

    conn = await get_async_connection(conn_id)
    await amask_all(secrets_to_mask(conn.password, {}, ()))  # before the extra: a broken one raises
    extra = parse_extra(conn.extra)
    try:
        secret_extras = registry.service_for(conn.conn_type, conn_id).secret_extras
    except PostageError:  # not a postage connection: aget_postage_hook says so; mask by key meanwhile
        secret_extras = ()
    await amask_all(secrets_to_mask(None, extra, secret_extras))
    return conn.conn_type, ConnectionFields(conn.login, conn.password, conn.host, extra, conn.port, conn.schema)
