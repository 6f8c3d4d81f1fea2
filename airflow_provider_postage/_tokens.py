"""One bearer token per set of credentials per process, shared by every hook (threads) and every
trigger (one asyncio loop): PB asks clients to reuse a token until it expires."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable

from airflow_provider_postage.protocol.flow import Token


class _Entry:
    def __init__(self) -> None:
        self.token: str | None = None
        self.expires_at = 0.0
        self.lock = threading.Lock()
        self.async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self.async_locks.get(loop)
        if lock is None:
            lock = self.async_locks[loop] = asyncio.Lock()
        return lock


class TokenCache:
    """Tokens keyed by a digest of the credentials; refreshed a margin before they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._guard = threading.Lock()

    def _entry(self, key: str) -> _Entry:
        with self._guard:
            return self._entries.setdefault(key, _Entry())

    def _valid(self, entry: _Entry) -> str | None:
        return entry.token if entry.token and self._clock() < entry.expires_at else None

    def _store(self, entry: _Entry, token: Token, fetched_at: float) -> str:
        margin = min(60.0, token.expires_in / 10)
        entry.token = token.access_token
        entry.expires_at = fetched_at + token.expires_in - margin
        return token.access_token

    def get(self, key: str, fetch: Callable[[], Token]) -> str:
        entry = self._entry(key)
        if token := self._valid(entry):
            return token
        with entry.lock:
            if token := self._valid(entry):
                return token
            fetched_at = self._clock()
            return self._store(entry, fetch(), fetched_at)

    async def aget(self, key: str, fetch: Callable[[], Awaitable[Token]]) -> str:
        entry = self._entry(key)
        if token := self._valid(entry):
            return token
        async with entry.async_lock():
            if token := self._valid(entry):
                return token
            fetched_at = self._clock()
            return self._store(entry, await fetch(), fetched_at)

    def invalidate(self, key: str, token: str) -> None:
        """Drop ``token`` after the API refused it, unless another caller has already replaced it."""
        entry = self._entry(key)
        if entry.token == token:
            entry.token = None

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


TOKENS = TokenCache()
