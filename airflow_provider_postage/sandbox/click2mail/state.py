"""The Click2Mail half of :class:`~..state.SandboxState`: accounts, balances (drain, pending credit), purchases."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..core import Drain, StateCore
from ..errors import InvalidSettingError, UnknownEntityError
from ..seed import DEFAULT_C2M_USERNAME, C2MAccountSeed
from ..values import money_str, to_money, to_rate
from .records import Purchase
from .rules import C2M_ENVIRONMENTS, C2MEnvironment

__all__ = ["Click2MailState"]


@dataclass
class _Account:
    username: str
    password: str
    balance: Decimal
    allow_negative: bool
    environment: C2MEnvironment
    drain: Drain | None = None
    #: Purchased credit not visible yet: (visible at, clock ns; amount).
    pending: list[tuple[int, Decimal]] = field(default_factory=list)


class Click2MailState(StateCore):
    """Click2Mail accounts; mixed into :class:`~..state.SandboxState` (public methods ``c2m_*``)."""

    _c2m: dict[str, _Account]

    # ---------------------------------------------------------------------------- lifecycle
    def _c2m_reset(self, accounts: Iterable[C2MAccountSeed]) -> None:
        self._c2m = {}
        for account in accounts:
            self._add_c2m(account)

    def _add_c2m(self, account: C2MAccountSeed) -> None:
        self._c2m[account.username] = _Account(
            username=account.username,
            password=account.password,
            balance=account.balance,
            allow_negative=account.allow_negative,
            environment=account.environment,
        )

    def add_c2m_account(self, account: C2MAccountSeed) -> None:
        """Add (or replace) a Click2Mail account until the next :meth:`reset`."""
        with self._lock:
            self._add_c2m(account)

    # ---------------------------------------------------------------------------- balances
    def _account(self, username: str) -> _Account:
        try:
            return self._c2m[username]
        except KeyError:
            raise UnknownEntityError(f"unknown Click2Mail account {username!r}") from None

    def _set_c2m_value(self, account: _Account, value: Decimal) -> None:
        account.balance = value
        account.drain = self._restarted(account.drain, value)

    def _c2m_balance_now(self, account: _Account) -> Decimal:
        if account.pending and (arrived := self._take_matured(account.pending)):
            now = self._drained(account.balance, account.drain, account.allow_negative)
            self._set_c2m_value(account, now + arrived)
        return self._drained(account.balance, account.drain, account.allow_negative)

    # ---------------------------------------------------------------------------- controls
    def c2m_balance(self, username: str = DEFAULT_C2M_USERNAME) -> Decimal:
        """Current balance of a Click2Mail account (drain included)."""
        with self._lock:
            return self._c2m_balance_now(self._account(username))

    def set_c2m_balance(
        self, username: str, balance: Decimal | int | str, *, allow_negative: bool | None = None
    ) -> None:
        self.set_c2m_account(username, balance=balance, allow_negative=allow_negative)

    def set_c2m_account(
        self,
        username: str,
        *,
        balance: Decimal | int | str | None = None,
        allow_negative: bool | None = None,
        environment: C2MEnvironment | None = None,
        password: str | None = None,
    ) -> None:
        """Change any of an account's balance, allowNegative flag, environment or password."""
        value = to_money(balance, "balance") if balance is not None else None
        if allow_negative is not None and not isinstance(allow_negative, bool):
            raise InvalidSettingError("allow_negative must be true or false")
        if environment is not None and environment not in C2M_ENVIRONMENTS:
            raise InvalidSettingError(f"environment must be one of {C2M_ENVIRONMENTS}")
        if password is not None and (not isinstance(password, str) or not password):
            raise InvalidSettingError("password must be a non-empty string")
        with self._lock:
            account = self._account(username)
            if allow_negative is not None:
                self._set_c2m_value(account, self._c2m_balance_now(account))
                account.allow_negative = allow_negative
            if value is not None:
                self._set_c2m_value(account, value)
            if environment is not None:
                account.environment = environment
            if password is not None:
                account.password = password

    def drain_c2m(self, username: str, rate_per_second: Decimal | int | str) -> None:
        """Make the balance fall by ``rate_per_second`` dollars per second (0 stops the drain)."""
        rate = to_rate(rate_per_second)
        with self._lock:
            account = self._account(username)
            now_value = self._c2m_balance_now(account)
            account.balance = now_value
            account.drain = Drain(now_value, rate, self._clock()) if rate else None

    def _c2m_snapshot(self) -> dict[str, Any]:
        return {
            a.username: {
                "balance": money_str(self._c2m_balance_now(a)),
                "allow_negative": a.allow_negative,
                "environment": a.environment,
                "drain_rate_per_second": str(a.drain.rate) if a.drain else None,
            }
            for a in self._c2m.values()
        }

    # ---------------------------------------------------------------------------- API
    def c2m_check_credentials(self, username: str, password: str) -> bool:
        with self._lock:
            account = self._c2m.get(username)
            if account is None:
                return False
            return secrets.compare_digest(password.encode(), account.password.encode())

    def c2m_credit(self, username: str) -> tuple[Decimal, bool]:
        """(balance, allowNegative) of an account."""
        with self._lock:
            account = self._account(username)
            return self._c2m_balance_now(account), account.allow_negative

    def c2m_environment(self, username: str) -> C2MEnvironment:
        with self._lock:
            return self._account(username).environment

    def c2m_apply_purchase(self, username: str, amount: Decimal, card_number: str = "") -> Purchase:
        """Add a validated purchase to the balance and record it."""
        amount = to_money(amount)
        if amount <= 0:
            raise InvalidSettingError("purchase amount must be positive")
        with self._lock:
            account = self._account(username)
            visible_at = self._settles_at()
            if visible_at is not None:
                account.pending.append((visible_at, amount))
            else:
                self._set_c2m_value(account, self._c2m_balance_now(account) + amount)
            purchase = Purchase(
                username=username,
                amount=amount,
                environment=account.environment,
                card_last4=card_number[-4:],
                at=self._now_iso(),
            )
            self._counters.purchases.append(purchase)
            return purchase
