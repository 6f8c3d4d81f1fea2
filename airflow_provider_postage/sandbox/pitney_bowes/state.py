"""The Pitney Bowes half of :class:`~..state.SandboxState`: merchants, their controls, views and refills.

It combines :class:`~.tokens.PBTokenState` (API keys, tokens) and :class:`~.ledger.PBLedgerState`
(balances, refills, auto refill, transaction history) and adds the merchant controls and the
``account/fund`` call with its duplicate-transaction policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..core import Drain
from ..errors import InvalidSettingError, UnknownEntityError
from ..seed import DEFAULT_PB_PRN, PBCredentialSeed, PBMerchantSeed
from ..values import CENT, check_date, money_str, to_money, to_rate
from .ledger import LineOfCredit, Merchant, PBLedgerState
from .records import AutoRefillRule, FundResult, LineOfCreditView, MerchantView, Refill
from .tokens import PBTokenState

__all__ = ["PitneyBowesState"]


class PitneyBowesState(PBTokenState, PBLedgerState):
    """Pitney Bowes credentials, tokens and merchants; mixed into :class:`~..state.SandboxState`."""

    #: Refills by (prn, X-PB-TransactionId), for the duplicate-transaction policy.
    _transactions: dict[tuple[str, str], Refill]

    # ---------------------------------------------------------------------------- lifecycle
    def _pb_reset(self, credentials: Iterable[PBCredentialSeed], merchants: Iterable[PBMerchantSeed]) -> None:
        self._pb_tokens_reset(credentials)
        self._pb_merchants = {}
        for merchant in merchants:
            self._add_merchant(merchant)
        self._transactions = {}
        self._pb_history = []

    def _add_merchant(self, merchant: PBMerchantSeed) -> None:
        loc = merchant.line_of_credit
        self._pb_merchants[merchant.prn] = Merchant(
            prn=merchant.prn,
            developer_id=merchant.developer_id,
            account_number=merchant.account_number,
            currency_code=merchant.currency_code,
            available_balance=merchant.available_balance,
            fund_enabled=merchant.fund_enabled,
            line_of_credit=(
                LineOfCredit(
                    account_number=loc.account_number,
                    currency_code=loc.currency_code,
                    balance_owed=loc.balance_owed,
                    available_credit=loc.available_credit,
                    credit_limit=loc.credit_limit,
                    minimum_amount_due=loc.minimum_amount_due,
                    minimum_due_date=loc.minimum_due_date,
                )
                if loc is not None
                else None
            ),
            auto_refill=AutoRefillRule(merchant.prn),
        )

    def add_pb_merchant(self, merchant: PBMerchantSeed) -> None:
        """Add (or replace) a Pitney Bowes merchant until the next :meth:`reset`."""
        with self._lock:
            self._add_merchant(merchant)

    # ---------------------------------------------------------------------------- controls
    def pb_balance(self, prn: str = DEFAULT_PB_PRN) -> Decimal:
        """Current postage account balance of a merchant (drain and auto refill included)."""
        with self._lock:
            return self._pb_balance_now(self._merchant(prn))

    def set_pb_balance(self, prn: str, available_balance: Decimal | int | str) -> None:
        self.set_pb_merchant(prn, available_balance=available_balance)

    def set_pb_line_of_credit(self, prn: str, **fields: Decimal | int | str) -> None:
        """Set line-of-credit fields: balance_owed, available_credit, credit_limit,
        minimum_amount_due (amounts), minimum_due_date (YYYY-MM-DD)."""
        self.set_pb_merchant(prn, **fields)  # type: ignore[arg-type]

    def set_pb_merchant(
        self,
        prn: str,
        *,
        available_balance: Decimal | int | str | None = None,
        fund_enabled: bool | None = None,
        balance_owed: Decimal | int | str | None = None,
        available_credit: Decimal | int | str | None = None,
        credit_limit: Decimal | int | str | None = None,
        minimum_amount_due: Decimal | int | str | None = None,
        minimum_due_date: str | None = None,
    ) -> None:
        """Change a merchant's postage balance, fund_enabled flag or line-of-credit fields."""
        balance = to_money(available_balance, "available_balance") if available_balance is not None else None
        if fund_enabled is not None and not isinstance(fund_enabled, bool):
            raise InvalidSettingError("fund_enabled must be true or false")
        loc_values = {
            name: to_money(value, name)
            for name, value in (
                ("balance_owed", balance_owed),
                ("available_credit", available_credit),
                ("credit_limit", credit_limit),
                ("minimum_amount_due", minimum_amount_due),
            )
            if value is not None
        }
        due = check_date(minimum_due_date) if minimum_due_date is not None else None
        with self._lock:
            merchant = self._merchant(prn)
            loc = merchant.line_of_credit
            if (loc_values or due is not None) and loc is None:
                raise InvalidSettingError(f"merchant {prn!r} has no PB Line of Credit")
            if balance is not None:
                self._set_pb_value(merchant, balance)
            if fund_enabled is not None:
                merchant.fund_enabled = fund_enabled
            if loc is not None:
                for name, value in loc_values.items():
                    setattr(loc, name, value)
                if due is not None:
                    loc.minimum_due_date = due

    def drain_pb(self, prn: str, rate_per_second: Decimal | int | str) -> None:
        """Make the postage balance fall by ``rate_per_second`` per second (floor 0; 0 stops)."""
        rate = to_rate(rate_per_second)
        with self._lock:
            merchant = self._merchant(prn)
            now_value = self._pb_balance_now(merchant)
            merchant.available_balance = now_value
            merchant.drain = Drain(now_value, rate, self._clock()) if rate else None

    def pb_line_of_credit(self, prn: str = DEFAULT_PB_PRN) -> LineOfCreditView | None:
        view = self.pb_merchant_view(prn)
        if view is None:
            raise UnknownEntityError(f"unknown Pitney Bowes merchant {prn!r}")
        return view.line_of_credit

    # ---------------------------------------------------------------------------- API
    def pb_merchant_visible(self, prn: str, developer_id: str) -> bool:
        """True when merchant ``prn`` exists and is ``developer_id``'s (or any developer's); no balance read."""
        with self._lock:
            merchant = self._pb_merchants.get(prn)
            return merchant is not None and merchant.developer_id in (None, developer_id)

    def pb_fund_enabled(self, prn: str) -> bool:
        """Whether the merchant's account may be refilled (``fund_enabled``); no balance read."""
        with self._lock:
            return self._merchant(prn).fund_enabled

    def pb_merchant_view(self, prn: str) -> MerchantView | None:
        with self._lock:
            m = self._pb_merchants.get(prn)
            if m is None:
                return None
            loc = m.line_of_credit
            return MerchantView(
                prn=m.prn,
                developer_id=m.developer_id,
                account_number=m.account_number,
                currency_code=m.currency_code,
                available_balance=self._pb_balance_now(m),
                fund_enabled=m.fund_enabled,
                line_of_credit=(
                    LineOfCreditView(
                        account_number=loc.account_number,
                        currency_code=loc.currency_code,
                        balance_owed=loc.balance_owed,
                        available_credit=loc.available_credit,
                        credit_limit=loc.credit_limit,
                        minimum_amount_due=loc.minimum_amount_due,
                        minimum_due_date=loc.minimum_due_date,
                    )
                    if loc is not None
                    else None
                ),
            )

    def pb_fund(self, prn: str, amount: int, currency_code: str, transaction_id: str) -> FundResult:
        """Apply a validated refill, following the duplicate-transaction policy, atomically."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidSettingError("refill amount must be a positive integer")
        value = Decimal(amount).quantize(CENT)
        with self._lock:
            merchant = self._merchant(prn)
            key = (prn, transaction_id)
            previous = self._transactions.get(key)
            if previous is not None:
                self._counters.pb_duplicate_transactions += 1
                policy = self._settings.pb_duplicate_transaction
                if policy == "replay":
                    return FundResult("replayed", previous)
                if policy == "reject":
                    return FundResult("duplicate_rejected", previous)
            if not self._pb_can_draw(merchant, value):
                loc = merchant.line_of_credit
                return FundResult("insufficient_credit", None, loc.available_credit if loc else None)
            refill = self._pb_credit(merchant, value, currency_code, transaction_id)
            self._transactions.setdefault(key, refill)
            return FundResult("applied", refill)

    # ---------------------------------------------------------------------------- snapshot
    def _pb_snapshot(self) -> dict[str, Any]:
        merchants: dict[str, Any] = {}
        for m in self._pb_merchants.values():
            loc = m.line_of_credit
            merchants[m.prn] = {
                "developer_id": m.developer_id,
                "account_number": m.account_number,
                "currency_code": m.currency_code,
                "available_balance": money_str(self._pb_balance_now(m)),
                "fund_enabled": m.fund_enabled,
                "drain_rate_per_second": str(m.drain.rate) if m.drain else None,
                "line_of_credit": (
                    {
                        "account_number": loc.account_number,
                        "currency_code": loc.currency_code,
                        "balance_owed": money_str(loc.balance_owed),
                        "available_credit": money_str(loc.available_credit),
                        "credit_limit": money_str(loc.credit_limit),
                        "minimum_amount_due": money_str(loc.minimum_amount_due),
                        "minimum_due_date": loc.minimum_due_date,
                    }
                    if loc is not None
                    else None
                ),
                "auto_refill": m.auto_refill.to_mapping(),
                "transactions": sum(1 for t in self._pb_history if t.prn == m.prn),
            }
        return {
            "credentials": self._pb_credentials_snapshot(),
            "merchants": merchants,
            "active_tokens": self._active_tokens(),
            "transaction_ids": sorted(f"{prn}:{txn}" for prn, txn in self._transactions),
        }
