"""Pitney Bowes API keys and the OAuth bearer tokens issued for them (part of :class:`~..state.SandboxState`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core import StateCore
from ..seed import PBCredentialSeed
from .records import IssuedToken

__all__ = ["PBTokenState"]


@dataclass
class _Token:
    issued: IssuedToken
    expires_ns: int


class PBTokenState(StateCore):
    """API keys (each bound to one developer id) and tokens; tokens expire after the ``token_ttl`` setting."""

    _pb_credentials: dict[str, PBCredentialSeed]
    _tokens: dict[str, _Token]

    def _pb_tokens_reset(self, credentials: Iterable[PBCredentialSeed]) -> None:
        self._pb_credentials = {cred.api_key: cred for cred in credentials}
        self._tokens = {}

    def add_pb_credentials(self, credentials: PBCredentialSeed) -> None:
        """Add (or replace) a Pitney Bowes API key until the next :meth:`reset`."""
        with self._lock:
            self._pb_credentials[credentials.api_key] = credentials

    def pb_check_credentials(self, api_key: str, api_secret: str) -> bool:
        with self._lock:
            cred = self._pb_credentials.get(api_key)
            if cred is None:
                return False
            return secrets.compare_digest(api_secret.encode(), cred.api_secret.encode())

    def pb_issue_token(self, api_key: str, api_secret: str) -> IssuedToken | None:
        """A new bearer token for valid credentials, None for bad ones."""
        with self._lock:
            cred = self._pb_credentials.get(api_key)
            if cred is None or not secrets.compare_digest(api_secret.encode(), cred.api_secret.encode()):
                return None
            ttl = self._settings.token_ttl
            token = "sbxtok-" + secrets.token_urlsafe(18)
            while token in self._tokens:  # pragma: no cover - 144 random bits
                token = "sbxtok-" + secrets.token_urlsafe(18)
            issued = IssuedToken(
                token=token,
                api_key=api_key,
                developer_id=cred.developer_id,
                issued_at_ms=self._wall_clock() // 1_000_000,
                expires_in=ttl,
            )
            self._tokens[token] = _Token(issued=issued, expires_ns=self._clock() + ttl * 1_000_000_000)
            self._counters.tokens_issued += 1
            return issued

    def pb_lookup_token(self, token: str) -> IssuedToken | None:
        """The token's grant if it is known and not expired, else None (expired ones are dropped)."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if self._clock() >= entry.expires_ns or entry.issued.api_key not in self._pb_credentials:
                del self._tokens[token]
                return None
            return entry.issued

    def expire_tokens(self) -> int:
        """Invalidate every issued token; returns how many were still valid."""
        with self._lock:
            alive = self._active_tokens()
            self._tokens.clear()
            return alive

    def _active_tokens(self) -> int:
        now = self._clock()
        return sum(1 for t in self._tokens.values() if t.expires_ns > now)

    def _pb_credentials_snapshot(self) -> list[dict[str, Any]]:
        return [{"api_key": c.api_key, "developer_id": c.developer_id} for c in self._pb_credentials.values()]
