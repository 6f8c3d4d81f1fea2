"""Thread-safe state of the postage sandbox: :class:`SandboxState`, the whole mutable world.

Nothing here knows about HTTP; the routes (:mod:`.app`) turn requests into calls on a
:class:`SandboxState`. All money is :class:`decimal.Decimal` (stored with two decimal places), all
clocks are integer nanoseconds, so no float ever touches an amount.

The class is assembled from one part per API and the shared pieces:

* :class:`~.click2mail.state.Click2MailState`: accounts, balances, purchases (``c2m_*``);
* :class:`~.pitney_bowes.state.PitneyBowesState`: API keys and tokens, merchants, refills, the
  auto-refill rule and the transaction history (``pb_*``);
* here: lifecycle (seed, reset), settings (:class:`~.settings.SandboxSettings`), faults
  (:class:`~.faults.Fault`), counters and the snapshot.

This module also re-exports the names that used to be defined in it (seed constants and records,
``Fault``, errors, money helpers), so ``from airflow_provider_postage.sandbox.state import …`` keeps working.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .click2mail.records import Purchase
from .click2mail.rules import C2M_ENVIRONMENTS, C2MEnvironment
from .click2mail.state import Click2MailState
from .core import Counters
from .errors import InvalidSettingError, SandboxError, UnknownEntityError
from .faults import ENDPOINTS, WIRE_FAULTS, Endpoint, Fault, WireFault, check_endpoint
from .pitney_bowes.records import (
    POSTAGE_FUND,
    AutoRefillRule,
    FundResult,
    IssuedToken,
    LineOfCreditView,
    MerchantView,
    PBTransaction,
    Refill,
)
from .pitney_bowes.state import PitneyBowesState
from .seed import (
    DEFAULT_C2M_ALLOW_NEGATIVE,
    DEFAULT_C2M_BALANCE,
    DEFAULT_C2M_ENVIRONMENT,
    DEFAULT_C2M_PASSWORD,
    DEFAULT_C2M_USERNAME,
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_API_SECRET,
    DEFAULT_PB_BALANCE,
    DEFAULT_PB_BALANCE_2,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_LOC_ACCOUNT_NUMBER,
    DEFAULT_PB_LOC_AVAILABLE_CREDIT,
    DEFAULT_PB_LOC_BALANCE_OWED,
    DEFAULT_PB_LOC_CREDIT_LIMIT,
    DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE,
    DEFAULT_PB_LOC_MINIMUM_DUE_DATE,
    DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER,
    DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2,
    DEFAULT_PB_PRN,
    DEFAULT_PB_PRN_2,
    DEFAULT_SEED,
    DEFAULT_TOKEN_TTL,
    DEMO_BILLING,
    C2MAccountSeed,
    LineOfCreditSeed,
    PBCredentialSeed,
    PBMerchantSeed,
    Seed,
)
from .settings import (
    C2M_PURCHASE_REPLIES,
    PB_DUPLICATE_POLICIES,
    C2MPurchaseReply,
    PBDuplicatePolicy,
    SandboxSettings,
)
from .values import CENT, money_str, to_money

__all__ = [
    "C2M_ENVIRONMENTS",
    "C2M_PURCHASE_REPLIES",
    "CENT",
    "DEFAULT_C2M_ALLOW_NEGATIVE",
    "DEFAULT_C2M_BALANCE",
    "DEFAULT_C2M_ENVIRONMENT",
    "DEFAULT_C2M_PASSWORD",
    "DEFAULT_C2M_USERNAME",
    "DEFAULT_PB_API_KEY",
    "DEFAULT_PB_API_SECRET",
    "DEFAULT_PB_BALANCE",
    "DEFAULT_PB_BALANCE_2",
    "DEFAULT_PB_DEVELOPER_ID",
    "DEFAULT_PB_LOC_ACCOUNT_NUMBER",
    "DEFAULT_PB_LOC_AVAILABLE_CREDIT",
    "DEFAULT_PB_LOC_BALANCE_OWED",
    "DEFAULT_PB_LOC_CREDIT_LIMIT",
    "DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE",
    "DEFAULT_PB_LOC_MINIMUM_DUE_DATE",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2",
    "DEFAULT_PB_PRN",
    "DEFAULT_PB_PRN_2",
    "DEFAULT_SEED",
    "DEFAULT_TOKEN_TTL",
    "DEMO_BILLING",
    "ENDPOINTS",
    "PB_DUPLICATE_POLICIES",
    "POSTAGE_FUND",
    "WIRE_FAULTS",
    "AutoRefillRule",
    "C2MAccountSeed",
    "C2MEnvironment",
    "C2MPurchaseReply",
    "Endpoint",
    "Fault",
    "FundResult",
    "InvalidSettingError",
    "IssuedToken",
    "LineOfCreditSeed",
    "LineOfCreditView",
    "MerchantView",
    "PBCredentialSeed",
    "PBDuplicatePolicy",
    "PBMerchantSeed",
    "PBTransaction",
    "Purchase",
    "Refill",
    "SandboxError",
    "SandboxSettings",
    "SandboxState",
    "Seed",
    "UnknownEntityError",
    "WireFault",
    "money_str",
    "to_money",
]


class SandboxState(Click2MailState, PitneyBowesState):
    """The whole mutable world of the sandbox, safe to use from several threads.

    ``clock`` is a monotonic clock in integer nanoseconds (drain, settling, token expiry);
    ``wall_clock`` is epoch time in integer nanoseconds (``issuedAt``, record times, card expiry,
    transaction report windows). Both can be replaced by tests.
    """

    def __init__(
        self,
        seed: Seed | Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if seed is None:
            seed = DEFAULT_SEED
        elif not isinstance(seed, Seed):
            seed = Seed.from_mapping(seed)
        self._seed: Seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._faults: dict[str, deque[Fault]] = {}
        self._counters = Counters()
        self._settings = SandboxSettings()
        self.reset()

    @classmethod
    def from_seed_file(cls, path: str | Path) -> SandboxState:
        return cls(Seed.from_file(path))

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def seed(self) -> Seed:
        return self._seed

    def reset(self) -> None:
        """Back to the seed: balances, settings, tokens, faults, transaction ids, auto-refill rules,
        transaction history and counters."""
        seed = self._seed
        with self._lock:
            self._c2m_reset(seed.c2m_accounts)
            self._pb_reset(seed.pb_credentials, seed.pb_merchants)
            self._faults = {name: deque() for name in ENDPOINTS}
            self._counters = Counters()
            self._settings = SandboxSettings(
                token_ttl=seed.token_ttl,
                c2m_purchase_reply=seed.c2m_purchase_reply,
                pb_duplicate_transaction=seed.pb_duplicate_transaction,
                compress=seed.compress,
                chunked=seed.chunked,
            )

    # ---------------------------------------------------------------------------- settings
    @property
    def sandbox_settings(self) -> SandboxSettings:
        """The current settings as one immutable record (see :mod:`.settings`)."""
        with self._lock:
            return self._settings

    @property
    def token_ttl(self) -> int:
        return self.sandbox_settings.token_ttl

    @token_ttl.setter
    def token_ttl(self, value: int) -> None:
        self.update_settings({"token_ttl": value})

    @property
    def c2m_purchase_reply(self) -> C2MPurchaseReply:
        return self.sandbox_settings.c2m_purchase_reply

    @c2m_purchase_reply.setter
    def c2m_purchase_reply(self, value: C2MPurchaseReply) -> None:
        self.update_settings({"c2m_purchase_reply": value})

    @property
    def pb_duplicate_transaction(self) -> PBDuplicatePolicy:
        return self.sandbox_settings.pb_duplicate_transaction

    @pb_duplicate_transaction.setter
    def pb_duplicate_transaction(self, value: PBDuplicatePolicy) -> None:
        self.update_settings({"pb_duplicate_transaction": value})

    @property
    def settle_seconds(self) -> int:
        """Seconds before purchased credit and refills show in the balance (0: at once). Real
        balances "do not reflect transactions still in progress"; this lets a sensor really wait."""
        return self.sandbox_settings.settle_seconds

    @settle_seconds.setter
    def settle_seconds(self, value: int) -> None:
        self.update_settings({"settle_seconds": value})

    @property
    def compress(self) -> bool:
        """Compress reply bodies (gzip or deflate) when the request's Accept-Encoding allows it."""
        return self.sandbox_settings.compress

    @compress.setter
    def compress(self, value: bool) -> None:
        self.update_settings({"compress": value})

    @property
    def chunked(self) -> bool:
        """Send HTTP/1.1 reply bodies with ``Transfer-Encoding: chunked`` in several pieces."""
        return self.sandbox_settings.chunked

    @chunked.setter
    def chunked(self, value: bool) -> None:
        self.update_settings({"chunked": value})

    def wire_settings(self) -> dict[str, bool]:
        """The wire settings alone: ``{"compress": …, "chunked": …}``."""
        return self.sandbox_settings.wire()

    def settings(self) -> dict[str, Any]:
        """Every setting: ``token_ttl``, ``c2m_purchase_reply``, ``pb_duplicate_transaction``,
        ``settle_seconds`` (API behaviour) and ``compress``, ``chunked`` (wire behaviour)."""
        return self.sandbox_settings.to_mapping()

    def update_settings(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Set any of the settings listed in :meth:`settings` (all validated before any is applied);
        returns them all. Their meaning is described in :mod:`.settings`."""
        with self._lock:
            self._settings = self._settings.updated(data)
            return self._settings.to_mapping()

    # ---------------------------------------------------------------------------- faults
    def inject_fault(
        self,
        endpoint: Endpoint,
        fault: Fault | None = None,
        *,
        times: int = 1,
        after: int = 0,
        status: int | None = None,
        body: str | None = None,
        content_type: str | None = None,
        delay: float = 0.0,
        apply: bool = False,
        drop: bool = False,
        headers: Mapping[str, str] | None = None,
        wire: WireFault | None = None,
        trickle_interval: float = 0.5,
    ) -> Fault:
        """Queue ``fault`` (or one built from the keywords) for the next ``times`` calls of ``endpoint``,
        after ``after`` calls that are answered normally (e.g. let a read before a purchase through)."""
        name = check_endpoint(endpoint)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise InvalidSettingError(f"times must be an integer >= 1, got {times!r}")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidSettingError(f"after must be an integer >= 0, got {after!r}")
        if fault is None:
            fault = Fault(
                status=status,
                body=body,
                content_type=content_type,
                delay=delay,
                apply=apply,
                drop=drop,
                headers=tuple((headers or {}).items()),
                wire=wire,
                trickle_interval=trickle_interval,
            )
        with self._lock:
            self._faults[name].extend([Fault()] * after + [fault] * times)
        return fault

    def clear_faults(self, endpoint: Endpoint | None = None) -> None:
        with self._lock:
            names = ENDPOINTS if endpoint is None else (check_endpoint(endpoint),)
            for name in names:
                self._faults[name].clear()

    def pending_faults(self) -> dict[str, list[Fault]]:
        with self._lock:
            return {name: list(queue) for name, queue in self._faults.items()}

    def begin_call(self, endpoint: Endpoint) -> Fault | None:
        """Count one request of ``endpoint`` and hand out its next queued fault, if any."""
        name = check_endpoint(endpoint)
        with self._lock:
            self._counters.requests[name] += 1
            queue = self._faults[name]
            return queue.popleft() if queue else None

    # ---------------------------------------------------------------------------- counters
    def counters(self) -> dict[str, Any]:
        """JSON-ready counters (amounts as strings): ``requests`` per endpoint, ``tokens_issued``,
        ``pb_duplicate_transactions``, ``purchases``, ``refills`` (auto refills included)."""
        with self._lock:
            c = self._counters
            return {
                "requests": dict(c.requests),
                "tokens_issued": c.tokens_issued,
                "pb_duplicate_transactions": c.pb_duplicate_transactions,
                "purchases": [p.to_mapping() for p in c.purchases],
                "refills": [r.to_mapping() for r in c.refills],
            }

    def reset_counters(self) -> None:
        """Zero the request counts and tokens_issued and empty the purchase/refill lists.

        Balances, tokens, the transaction ids already seen and the transaction history are kept.
        """
        with self._lock:
            self._counters = Counters()

    def request_count(self, endpoint: Endpoint) -> int:
        with self._lock:
            return self._counters.requests[check_endpoint(endpoint)]

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._counters.tokens_issued

    @property
    def purchases(self) -> list[Purchase]:
        with self._lock:
            return list(self._counters.purchases)

    @property
    def refills(self) -> list[Refill]:
        with self._lock:
            return list(self._counters.refills)

    # ---------------------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready picture of the whole state (amounts as two-place strings).

        ``"settings"`` holds the API-behaviour settings, ``"wire"`` the wire settings
        (``compress``, ``chunked``); :meth:`settings` returns both together. Each PB merchant also
        shows its ``auto_refill`` rule and the number of ``transactions`` in its history.
        """
        with self._lock:
            return {
                "c2m": {"accounts": self._c2m_snapshot()},
                "pb": self._pb_snapshot(),
                "settings": self._settings.api(),
                "wire": self._settings.wire(),
                "faults": {name: [f.to_mapping() for f in q] for name, q in self._faults.items()},
            }
