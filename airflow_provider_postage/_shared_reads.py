"""Balance reads shared across processes (two triggerers of a cluster) through Redis: the optional extra
``[redis]`` and the provider option ``[postage] redis_url``.

Per process, a read is already shared by every poll of the account while it is younger than the poll
interval (``_drivers.coalesced``). Across triggerers, a short lease (``SET NX PX``) elects the one that
polls; it leaves the balances under the account's key for the interval, and the others take them from
there. The key is a digest of the account and its credentials (never a secret); the value holds balances
only. Reads only: purchases never depend on Redis, and when Redis is unreachable each process reads for
itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_postage.protocol.records import Balance

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Redis]] = weakref.WeakKeyDictionary()
_PREFIX = "postage:"
#: How often a process that lost the lease looks for the winner's balances, and for how long at most.
_WAIT_STEP = 0.05
_WAIT_MAX = 10.0


def redis_url() -> str | None:
    """The provider option ``[postage] redis_url`` (or ``AIRFLOW__POSTAGE__REDIS_URL``); None when unset."""
    from airflow.configuration import conf

    url = conf.get("postage", "redis_url", fallback="") or ""
    return url.strip() or None


def _client(url: str) -> Redis:
    from redis.asyncio import Redis

    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


async def read_through(
    url: str, key: str, max_age: float, read: Callable[[], Awaitable[list[Balance]]]
) -> list[Balance]:
    """The account's balances younger than ``max_age`` from Redis, else read once for the whole cluster."""
    if max_age <= 0:
        return await read()
    try:
        client = _client(url)
        cached = await _fresh(client, key, max_age)
        if cached is not None:
            return cached
        token = uuid.uuid4().hex
        if await client.set(f"{_PREFIX}lease:{key}", token, nx=True, px=max(1, int(max_age * 1000))):
            balances = await read()
            document = {"at": time.time(), "balances": [balance.to_dict() for balance in balances]}
            await client.set(f"{_PREFIX}balances:{key}", json.dumps(document), px=max(1, int(max_age * 2000)))
            return balances
        deadline = time.monotonic() + min(max_age, _WAIT_MAX)
        while time.monotonic() < deadline:  # another process is reading it right now
            await asyncio.sleep(_WAIT_STEP)
            cached = await _fresh(client, key, max_age)
            if cached is not None:
                return cached
    except Exception as error:  # Redis down, misconfigured or not installed: each process reads for itself
        if isinstance(error, ImportError) or type(error).__module__.startswith("redis"):
            log.warning("postage: shared balance cache unavailable (%s); reading directly", type(error).__name__)
        else:
            raise
    return await read()


async def _fresh(client: Any, key: str, max_age: float) -> list[Balance] | None:
    raw = await client.get(f"{_PREFIX}balances:{key}")
    if not raw:
        return None
    document = json.loads(raw)
    if time.time() - float(document["at"]) >= max_age:
        return None
    return [Balance.from_dict(item) for item in document["balances"]]
