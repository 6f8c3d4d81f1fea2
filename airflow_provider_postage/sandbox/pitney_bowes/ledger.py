"""Pitney Bowes postage money: balances, refills, the auto-refill rule and the transaction history.

Every refill goes through :meth:`PBLedgerState._pb_credit`: it draws on the line of credit (when the
merchant has one), credits the postage account (at once, or after ``settle_seconds``), and is recorded
twice, in ``counters()["refills"]`` (a :class:`~.records.Refill`) and in the transaction history (a
``POSTAGE FUND`` :class:`~.records.PBTransaction`).

**Auto refill.** An enabled rule (``threshold`` and ``add_amount`` both set) is applied whenever the
postage balance is read — the ``account-balance`` API, :meth:`pb_balance`, :meth:`pb_merchant_view`,
:meth:`snapshot`, a drain change —: when the balance plus the credit still settling is below
``threshold``, ``add_amount`` is refilled once (source ``"auto_refill"``, transaction id
``auto-<16 hex>``). Nothing happens when the merchant is not ``fund_enabled`` or its line of credit
lacks ``add_amount`` of available credit; an ``add_amount`` of 0 never refills.

The history also takes entries seeded by tests (:meth:`add_pb_transaction`, of any type and time) and
is cleared by :meth:`reset` (not by :meth:`reset_counters`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..core import Drain, StateCore
from ..errors import InvalidSettingError, UnknownEntityError
from ..values import CENT, iso_ms, money_str, parse_instant, to_money, utc_datetime
from .records import POSTAGE_FUND, AutoRefillRule, PBTransaction, Refill, RefillSource

__all__ = ["LineOfCredit", "Merchant", "PBLedgerState"]


@dataclass
class LineOfCredit:
    account_number: str
    currency_code: str
    balance_owed: Decimal
    available_credit: Decimal
    credit_limit: Decimal
    minimum_amount_due: Decimal
    minimum_due_date: str


@dataclass
class Merchant:
    prn: str
    developer_id: str | None
    account_number: str
    currency_code: str
    available_balance: Decimal
    line_of_credit: LineOfCredit | None
    fund_enabled: bool
    auto_refill: AutoRefillRule
    drain: Drain | None = None
    #: Refills not visible yet: (visible at, clock ns; amount).
    pending: list[tuple[int, Decimal]] = field(default_factory=list)


class PBLedgerState(StateCore):
    """Merchants' postage balances and their history (see the module docstring)."""

    _pb_merchants: dict[str, Merchant]
    _pb_history: list[PBTransaction]

    # ---------------------------------------------------------------------------- balances
    def _merchant(self, prn: str) -> Merchant:
        try:
            return self._pb_merchants[prn]
        except KeyError:
            raise UnknownEntityError(f"unknown Pitney Bowes merchant {prn!r}") from None

    def _set_pb_value(self, merchant: Merchant, value: Decimal) -> None:
        merchant.available_balance = value
        merchant.drain = self._restarted(merchant.drain, value)

    def _pb_settled(self, merchant: Merchant) -> Decimal:
        """The balance now: settled refills added, drain applied; no auto refill."""
        if merchant.pending and (arrived := self._take_matured(merchant.pending)):
            self._set_pb_value(merchant, self._drained(merchant.available_balance, merchant.drain, False) + arrived)
        return self._drained(merchant.available_balance, merchant.drain, False)

    def _pb_balance_now(self, merchant: Merchant) -> Decimal:
        """The balance as a read sees it: settled, then topped up by an enabled auto-refill rule."""
        value = self._pb_settled(merchant)
        rule = merchant.auto_refill
        if not (rule.enabled and rule.add_amount and rule.threshold is not None and merchant.fund_enabled):
            return value
        in_flight = sum((amount for _, amount in merchant.pending), Decimal("0.00"))
        if value + in_flight >= rule.threshold:
            return value
        amount = Decimal(rule.add_amount).quantize(CENT)
        if not self._pb_can_draw(merchant, amount):
            return value
        self._pb_credit(
            merchant,
            amount,
            merchant.currency_code,
            "auto-" + secrets.token_hex(8),
            source="auto_refill",
            description=f"Auto refill: balance {money_str(value)} below threshold {money_str(rule.threshold)}",
        )
        return self._pb_settled(merchant)

    # ---------------------------------------------------------------------------- refills
    def _pb_can_draw(self, merchant: Merchant, value: Decimal) -> bool:
        loc = merchant.line_of_credit
        return loc is None or value <= loc.available_credit

    def _pb_credit(
        self,
        merchant: Merchant,
        value: Decimal,
        currency_code: str,
        transaction_id: str,
        *,
        source: RefillSource | None = None,
        description: str | None = None,
    ) -> Refill:
        """Move ``value`` into the postage account (credit already checked) and record it."""
        loc = merchant.line_of_credit
        if loc is not None:
            loc.available_credit -= value
            loc.balance_owed += value
        visible_at = self._settles_at()
        if visible_at is not None:
            merchant.pending.append((visible_at, value))
        else:
            self._set_pb_value(merchant, self._pb_settled(merchant) + value)
        origin = "PB Line of Credit" if loc is not None else "payment method"
        at_ns = self._wall_clock()
        refill = Refill(
            prn=merchant.prn,
            amount=value,
            currency_code=currency_code,
            transaction_id=transaction_id,
            source=source or ("line_of_credit" if loc is not None else "payment_method"),
            at=iso_ms(at_ns),
        )
        self._counters.refills.append(refill)
        self._pb_history.append(
            PBTransaction(
                transaction_id=transaction_id,
                prn=merchant.prn,
                transaction_type=POSTAGE_FUND,
                amount=value,
                at=utc_datetime(at_ns),
                description=f"{description or 'Postage fund'} (from {origin})",
            )
        )
        return refill

    # ---------------------------------------------------------------------------- auto refill
    def pb_autorefill_rule(self, prn: str) -> AutoRefillRule:
        """The merchant's auto-refill rule (never set: threshold and add_amount None, disabled)."""
        with self._lock:
            return self._merchant(prn).auto_refill

    def set_pb_autorefill_rule(
        self,
        prn: str,
        *,
        threshold: Decimal | int | str | None = None,
        add_amount: int | None = None,
        enabled: bool = False,
    ) -> AutoRefillRule:
        """Replace the merchant's rule; a value left out is None, which disables the rule.

        ``threshold``: an amount >= 0 (two places at most); ``add_amount``: whole dollars >= 0.
        """
        limit = to_money(threshold, "threshold") if threshold is not None else None
        if limit is not None and limit < 0:
            raise InvalidSettingError(f"threshold must be >= 0, got {money_str(limit)}")
        if add_amount is not None and (isinstance(add_amount, bool) or not isinstance(add_amount, int)):
            raise InvalidSettingError(f"add_amount must be a whole number of dollars, got {add_amount!r}")
        if add_amount is not None and add_amount < 0:
            raise InvalidSettingError(f"add_amount must be >= 0, got {add_amount!r}")
        if not isinstance(enabled, bool):
            raise InvalidSettingError(f"enabled must be true or false, got {enabled!r}")
        with self._lock:
            merchant = self._merchant(prn)
            merchant.auto_refill = AutoRefillRule(prn, limit, add_amount, enabled)
            return merchant.auto_refill

    # ---------------------------------------------------------------------------- history
    def add_pb_transaction(
        self,
        prn: str,
        amount: Decimal | int | str,
        at: datetime | str,
        *,
        transaction_type: str = POSTAGE_FUND,
        transaction_id: str | None = None,
        description: str | None = None,
    ) -> PBTransaction:
        """Add an entry to a merchant's transaction history (e.g. months-old refills for a report test).

        ``at``: an aware datetime or an ISO 8601 date-time (``2026-11-01T00:00:00Z``); ``amount``: > 0
        for ``POSTAGE FUND``, any amount for other types (reported as ``postageDepositAmount`` too);
        ``transaction_id`` defaults to ``hist-<16 hex>``. Balances do not change.
        """
        entry = _entry(prn, amount, at, transaction_type, transaction_id, description)
        with self._lock:
            self._merchant(prn)
            self._pb_history.append(entry)
        return entry

    def add_pb_transactions(self, prn: str, entries: Iterable[Mapping[str, Any]]) -> list[PBTransaction]:
        """Add several entries at once, all or none: mappings with ``amount``, ``at`` and optionally
        ``type``, ``transaction_id``, ``description`` (as :meth:`add_pb_transaction`)."""
        built = []
        for item in entries:
            unknown = sorted(set(item) - {"amount", "at", "type", "transaction_id", "description"})
            if unknown or "amount" not in item or "at" not in item:
                raise InvalidSettingError(f"a transaction needs amount and at; unknown keys: {unknown}")
            built.append(
                _entry(
                    prn,
                    item["amount"],
                    item["at"],
                    item.get("type", POSTAGE_FUND),
                    item.get("transaction_id"),
                    item.get("description"),
                )
            )
        with self._lock:
            self._merchant(prn)
            self._pb_history.extend(built)
        return built

    def pb_transactions(
        self,
        *,
        prn: str | None = None,
        developer_id: str | None = None,
        from_time: datetime | None = None,
        to_time: datetime | None = None,
        transaction_type: str | None = None,
    ) -> list[PBTransaction]:
        """History entries, oldest first, filtered by merchant, by the developer that sees the merchant
        (its own or any developer's merchants), by time (``from_time <= at <= to_time``) and by type
        (case-insensitive). An unknown ``prn`` is :class:`UnknownEntityError`."""
        wanted_type = transaction_type.strip().upper() if transaction_type is not None else None
        with self._lock:
            if prn is not None:
                self._merchant(prn)
            visible = {
                m.prn
                for m in self._pb_merchants.values()
                if developer_id is None or m.developer_id in (None, developer_id)
            }
            entries = [
                t
                for t in self._pb_history
                if t.prn in visible
                and (prn is None or t.prn == prn)
                and (from_time is None or t.at >= from_time)
                and (to_time is None or t.at <= to_time)
                and (wanted_type is None or t.transaction_type.upper() == wanted_type)
            ]
        return sorted(entries, key=lambda t: t.at)


def _entry(
    prn: str,
    amount: object,
    at: object,
    transaction_type: object,
    transaction_id: object,
    description: object,
) -> PBTransaction:
    value = to_money(amount, "amount")
    if not isinstance(transaction_type, str) or not transaction_type.strip():
        raise InvalidSettingError(f"type must be a non-empty string, got {transaction_type!r}")
    if transaction_type.strip().upper() == POSTAGE_FUND and value <= 0:
        raise InvalidSettingError(f"a {POSTAGE_FUND} amount must be > 0, got {amount!r}")
    if transaction_id is not None and (not isinstance(transaction_id, str) or not transaction_id):
        raise InvalidSettingError("transaction_id must be a non-empty string")
    if description is not None and not isinstance(description, str):
        raise InvalidSettingError("description must be a string")
    return PBTransaction(
        transaction_id=transaction_id or "hist-" + secrets.token_hex(8),
        prn=prn,
        transaction_type=transaction_type.strip(),
        amount=value,
        at=_instant(at),
        description=description,
    )


def _instant(at: object) -> datetime:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InvalidSettingError(f"at must be an aware datetime (with a time zone), got {at!r}")
        return at.astimezone(timezone.utc)
    moment = parse_instant(at) if isinstance(at, str) else None
    if moment is None:
        raise InvalidSettingError(f"at must be an ISO 8601 date-time such as 2026-11-01T00:00:00Z, got {at!r}")
    return moment
