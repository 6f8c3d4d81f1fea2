"""The sandbox's run-time settings: one immutable :class:`SandboxSettings`, replaced as a whole on change.

API behaviour:

* ``token_ttl`` (int seconds >= 0, default 35999): lifetime of Pitney Bowes tokens;
* ``c2m_purchase_reply`` (``"full"`` | ``"description"`` | ``"declaration_only"``): shape of a
  successful Click2Mail purchase reply;
* ``pb_duplicate_transaction`` (``"replay"`` | ``"reject"`` | ``"apply"``): what a refill with an
  ``X-PB-TransactionId`` already seen for the merchant does;
* ``settle_seconds`` (int >= 0, default 0): delay before purchased credit and refills show in balances.

Wire behaviour (:mod:`.wire`):

* ``compress`` (bool, default true): when the request's ``Accept-Encoding`` allows ``gzip`` or
  ``deflate`` (q-values honoured, gzip preferred on a tie), every non-empty reply body is compressed
  with that coding (``deflate`` = zlib, RFC 1950), with ``Content-Encoding`` and
  ``Vary: Accept-Encoding``, whatever its size, as CDNs do;
* ``chunked`` (bool, default true): HTTP/1.1 replies go out with ``Transfer-Encoding: chunked``
  (no Content-Length) in up to three pieces, as proxies send them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .errors import InvalidSettingError

__all__ = [
    "C2M_PURCHASE_REPLIES",
    "DEFAULT_TOKEN_TTL",
    "PB_DUPLICATE_POLICIES",
    "SETTING_NAMES",
    "C2MPurchaseReply",
    "PBDuplicatePolicy",
    "SandboxSettings",
    "check_dup",
    "check_flag",
    "check_reply",
    "check_settle",
    "check_ttl",
]

DEFAULT_TOKEN_TTL = 35999

C2MPurchaseReply = Literal["full", "description", "declaration_only"]
C2M_PURCHASE_REPLIES: tuple[C2MPurchaseReply, ...] = get_args(C2MPurchaseReply)

PBDuplicatePolicy = Literal["replay", "reject", "apply"]
PB_DUPLICATE_POLICIES: tuple[PBDuplicatePolicy, ...] = get_args(PBDuplicatePolicy)


def check_ttl(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSettingError(f"token_ttl must be an integer number of seconds >= 0, got {value!r}")
    return value


def check_settle(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSettingError(f"settle_seconds must be an integer number of seconds >= 0, got {value!r}")
    return value


def check_reply(value: object) -> C2MPurchaseReply:
    if value not in C2M_PURCHASE_REPLIES:
        raise InvalidSettingError(f"c2m_purchase_reply must be one of {C2M_PURCHASE_REPLIES}, got {value!r}")
    return value


def check_dup(value: object) -> PBDuplicatePolicy:
    if value not in PB_DUPLICATE_POLICIES:
        raise InvalidSettingError(f"pb_duplicate_transaction must be one of {PB_DUPLICATE_POLICIES}, got {value!r}")
    return value


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidSettingError(f"{name} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class SandboxSettings:
    """Every setting, validated on construction (:class:`InvalidSettingError`); see the module docstring."""

    token_ttl: int = DEFAULT_TOKEN_TTL
    c2m_purchase_reply: C2MPurchaseReply = "full"
    pb_duplicate_transaction: PBDuplicatePolicy = "replay"
    settle_seconds: int = 0
    compress: bool = True
    chunked: bool = True

    def __post_init__(self) -> None:
        check_ttl(self.token_ttl)
        check_reply(self.c2m_purchase_reply)
        check_dup(self.pb_duplicate_transaction)
        check_settle(self.settle_seconds)
        check_flag("compress", self.compress)
        check_flag("chunked", self.chunked)

    def updated(self, changes: Mapping[str, Any]) -> SandboxSettings:
        """A copy with ``changes`` (any subset of the settings) applied; unknown names are refused."""
        unknown = sorted(set(changes) - set(SETTING_NAMES))
        if unknown:
            raise InvalidSettingError(f"unknown settings: {unknown}")
        return dataclasses.replace(self, **changes)

    def api(self) -> dict[str, Any]:
        """The API-behaviour settings: ``token_ttl``, ``c2m_purchase_reply``, ``pb_duplicate_transaction``,
        ``settle_seconds``."""
        return {
            "token_ttl": self.token_ttl,
            "c2m_purchase_reply": self.c2m_purchase_reply,
            "pb_duplicate_transaction": self.pb_duplicate_transaction,
            "settle_seconds": self.settle_seconds,
        }

    def wire(self) -> dict[str, bool]:
        """The wire settings: ``compress``, ``chunked``."""
        return {"compress": self.compress, "chunked": self.chunked}

    def to_mapping(self) -> dict[str, Any]:
        """Every setting, JSON-ready."""
        return {**self.api(), **self.wire()}


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SandboxSettings))
