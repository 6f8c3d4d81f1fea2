"""What the Click2Mail and Pitney Bowes halves of :class:`~.state.SandboxState` share.

:class:`StateCore` declares the shared attributes (one re-entrant lock, the two clocks, the
:class:`~.settings.SandboxSettings`, the :class:`Counters`) and the balance arithmetic both APIs use:
a balance may *drain* (fall at a rate per second, computed when read) and may have *pending* credit
(purchases and refills not visible before ``settle_seconds``). Only touch state under ``_lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal

from .click2mail.records import Purchase
from .faults import ENDPOINTS
from .pitney_bowes.records import Refill
from .settings import SandboxSettings
from .values import CENT, iso_ms, utc_datetime

__all__ = ["Counters", "Drain", "StateCore"]

_NS = 1_000_000_000


@dataclass
class Drain:
    """A balance falling by ``rate`` dollars per second from ``start`` since ``started_ns`` (clock)."""

    start: Decimal
    rate: Decimal
    started_ns: int


@dataclass
class Counters:
    """What :meth:`~.state.SandboxState.reset_counters` zeroes."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    tokens_issued: int = 0
    pb_duplicate_transactions: int = 0
    purchases: list[Purchase] = field(default_factory=list)
    refills: list[Refill] = field(default_factory=list)


class StateCore:
    """Shared attributes and balance arithmetic (see the module docstring)."""

    _lock: threading.RLock
    #: Monotonic clock, integer nanoseconds: drains, settling, token expiry.
    _clock: Callable[[], int]
    #: Epoch clock, integer nanoseconds: record times, ``issuedAt``, card expiry, report windows.
    _wall_clock: Callable[[], int]
    _settings: SandboxSettings
    _counters: Counters

    def today(self) -> date:
        """Today's date (UTC) by the wall clock; used for card expiry."""
        return self.now().date()

    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime."""
        return utc_datetime(self._wall_clock())

    def _now_iso(self) -> str:
        return iso_ms(self._wall_clock())

    def _drained(self, value: Decimal, drain: Drain | None, allow_negative: bool) -> Decimal:
        """``value`` as it stands now under ``drain`` (down to cents, never below 0 unless allowed)."""
        if drain is None:
            return value
        elapsed = Decimal(max(0, self._clock() - drain.started_ns)) / Decimal(_NS)
        drained = (drain.rate * elapsed).quantize(CENT, rounding=ROUND_DOWN)
        current = drain.start - drained
        if not allow_negative:
            current = max(current, min(drain.start, Decimal("0.00")))
        return current.quantize(CENT)

    def _restarted(self, drain: Drain | None, value: Decimal) -> Drain | None:
        """``drain`` restarted from ``value`` now (after a balance change), or None."""
        return None if drain is None else Drain(start=value, rate=drain.rate, started_ns=self._clock())

    def _take_matured(self, pending: list[tuple[int, Decimal]]) -> Decimal:
        """Take the pending credit whose time has come out of ``pending``; return its sum."""
        now = self._clock()
        due = [amount for visible_ns, amount in pending if visible_ns <= now]
        pending[:] = [(visible_ns, amount) for visible_ns, amount in pending if visible_ns > now]
        return sum(due, Decimal("0.00"))

    def _settles_at(self) -> int | None:
        """Clock time at which credit bought now becomes visible, or None when it shows at once."""
        settle = self._settings.settle_seconds
        return self._clock() + settle * _NS if settle else None
