"""The funding policy's memory, per account: every purchase this provider attempted (the ledger), who is
buying right now (the lease) and how many purchases in a row were refused (the breaker).

Where it lives: Airflow Variables, the one store every worker and the triggerer reach on Airflow 2.11 and
3.x alike (through the Execution API on 3.x; a task must not open the metadata database). XCom is per task
instance, the task state store per task instance and 3.3+ only, ``asset_state_store`` per asset watcher.
Variables are last-write-wins, with no compare-and-set, so the lease is taken by writing it, waiting a
moment and reading it back: of two tasks that wrote, both read the later write and only its writer goes
on. A writer delayed between its check and its write by more than that moment could still slip through;
where that matters, an Airflow pool of one slot per account makes the scheduler itself serialize them.

Variable keys (JSON values, documented in docs/funding.md): ``postage_ledger.<provider>.<account>``,
``postage_lease.<provider>.<account>``, ``postage_breaker.<provider>.<account>``. Deleting the breaker's
Variable (UI: Admin > Variables, or ``airflow variables delete``) closes it again.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Protocol

import pendulum

from airflow_provider_postage.protocol.errors import PostageError
from airflow_provider_postage.protocol.money import format_money

#: How long a purchase counts as settling (bought, not yet in the balance) at most.
DEFAULT_SETTLE_WINDOW = dt.timedelta(hours=1)
#: Refused purchases in a row that open the breaker.
DEFAULT_BREAKER_THRESHOLD = 3
_MAX_ENTRIES = 500
_MAX_BALANCES = 1000
#: Statuses of money that left (or may have left) the account's card or line of credit.
SPENT = ("pending", "purchased", "unknown")


class FundingRefused(PostageError):
    """The funding policy refused a purchase before anything was sent (cap, breaker, busy account)."""


class Store(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class VariableStore:
    """Airflow Variables, on either Airflow line."""

    #: How long a lease's writer waits before reading it back (last write wins).
    settle_seconds = 0.25

    def get(self, key: str) -> str | None:
        from airflow.providers.common.compat.sdk import Variable

        value = Variable.get(key, None)  # positional: the keyword differs between Airflow 2 and 3
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(key, value, description="airflow-provider-postage funding policy; see docs/funding.md")

    def delete(self, key: str) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.delete(key)


class MemoryStore:
    """A process-local store: for unit tests that call ``execute()`` directly, and for ``dag.test()`` in
    one process. Nothing in it outlives the process."""

    settle_seconds = 0.0

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


#: Replaceable for tests that call an operator's execute() directly on Airflow 3 (no task runner, so no
#: Variables); DAG runs always use Airflow's Variables.
STORE: list[Store] = [VariableStore()]


def _now() -> dt.datetime:
    return pendulum.now("UTC")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@:-]", "_", text)[:180]


class AccountLedger:
    """The ledger, lease and breaker of one account (``provider`` + a non-secret ``account`` id)."""

    def __init__(
        self, provider: str, account: str, store: Store | None = None, clock: Callable[[], dt.datetime] = _now
    ) -> None:
        self.provider = provider
        self.account = account
        self.store = store or STORE[0]
        self.clock = clock
        suffix = f"{_slug(provider)}.{_slug(account)}"
        self.ledger_key = f"postage_ledger.{suffix}"
        self.lease_key = f"postage_lease.{suffix}"
        self.breaker_key = f"postage_breaker.{suffix}"

    # --- the ledger --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        raw = self.store.get(self.ledger_key)
        document = json.loads(raw) if raw else {}
        if not isinstance(document, dict):
            document = {}
        document.setdefault("version", 1)
        document.update(provider=self.provider, account=self.account)
        document.setdefault("entries", [])
        document.setdefault("balances", [])
        return document

    def _save(self, document: dict[str, Any]) -> None:
        document["entries"] = document["entries"][-_MAX_ENTRIES:]
        document["balances"] = document["balances"][-_MAX_BALANCES:]
        self.store.set(self.ledger_key, json.dumps(document))

    def entries(self) -> list[dict[str, Any]]:
        return list(self._load()["entries"])

    def record(self, entry: dict[str, Any]) -> str:
        """Add a purchase attempt; returns its id for :meth:`update`."""
        document = self._load()
        entry = {"id": uuid.uuid4().hex[:12], "at": self.clock().isoformat(), **entry}
        document["entries"].append(entry)
        document["conn_id"] = entry.get("conn_id")
        self._save(document)
        return str(entry["id"])

    def update(self, entry_id: str, **fields: Any) -> None:
        document = self._load()
        for entry in document["entries"]:
            if entry.get("id") == entry_id:
                entry.update(fields)
        self._save(document)

    def update_transaction(self, transaction_id: str, **fields: Any) -> None:
        """Update the latest attempt with this transaction id (a task instance's purchase key)."""
        document = self._load()
        for entry in reversed(document["entries"]):
            if entry.get("transaction_id") == transaction_id:
                entry.update(fields)
                break
        self._save(document)

    def completed(self, transaction_id: str) -> dict[str, Any] | None:
        """The purchase this key (a task instance) completed, if the ledger still holds it."""
        for entry in reversed(self.entries()):
            if entry.get("transaction_id") == transaction_id and entry.get("status") in (
                "purchased",
                "already_applied",
            ):
                return entry
        return None

    def record_balance(self, account_type: str, available: Decimal) -> None:
        document = self._load()
        document["balances"].append(
            {"at": self.clock().isoformat(), "account_type": account_type, "available": format_money(available)}
        )
        self._save(document)

    def spent_since(self, since: dt.datetime) -> Decimal:
        """Money bought (or possibly bought) since ``since``: refused purchases cost nothing."""
        total = Decimal(0)
        for entry in self.entries():
            if entry.get("status") in SPENT and _parse(entry["at"]) >= since:
                total += Decimal(str(entry["amount"]))
        return total

    def settling(self, available: Decimal, window: dt.timedelta = DEFAULT_SETTLE_WINDOW) -> Decimal:
        """Credit bought recently that the balance does not show yet. A purchase counts until the balance
        has been seen to include it -- now, in its ``balance_after``, or in any reading the ledger took
        after it (purchases and balance sensors record theirs) -- or the settle window has passed. Once
        seen, it is settled for good: spending the money later does not make it "settling" again."""
        document = self._load()
        now = self.clock()
        total = Decimal(0)
        changed = False
        for entry in document["entries"]:
            if entry.get("settled") or entry.get("status") not in SPENT or now - _parse(entry["at"]) > window:
                continue
            shown = Decimal(str(entry.get("balance_before") or 0)) + Decimal(str(entry["amount"]))
            readings = [Decimal(r["available"]) for r in document["balances"] if r["at"] > entry["at"]]
            if entry.get("balance_after") not in (None, ""):
                readings.append(Decimal(str(entry["balance_after"])))
            if available >= shown or any(reading >= shown for reading in readings):
                entry["settled"] = changed = True
            else:
                total += Decimal(str(entry["amount"]))
        if changed:
            self._save(document)
        return total

    # --- one purchase per account at a time --------------------------------------------------------

    def _lease(self) -> dict[str, Any] | None:
        raw = self.store.get(self.lease_key)
        lease = json.loads(raw) if raw else None
        if not isinstance(lease, dict) or _parse(lease.get("until", "1970-01-01")) < self.clock():
            return None
        return lease

    @contextmanager
    def lease(
        self,
        holder: str,
        *,
        ttl: dt.timedelta,
        wait: float,
        settle: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[bool]:
        """Hold the account's lease for one purchase: wait up to ``wait`` seconds for another holder (0:
        refuse at once). Written, then read back after ``settle`` seconds: last write wins. Yields whether
        another holder was seen (its purchase may have changed the balance meanwhile)."""
        deadline = time.monotonic() + wait
        waited = False
        while True:
            current = self._lease()
            if current is None or current.get("holder") == holder:
                until = (self.clock() + ttl).isoformat()
                self.store.set(self.lease_key, json.dumps({"holder": holder, "until": until}))
                sleep(getattr(self.store, "settle_seconds", 0.25) if settle is None else settle)
                current = self._lease()
                if current is not None and current.get("holder") == holder:
                    break
            if time.monotonic() >= deadline:
                who = (current or {}).get("holder", "another task")
                raise FundingRefused(
                    f"another purchase on {self.provider} account {self.account} is in progress ({who}); "
                    "not buying at the same time"
                )
            waited = True
            sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        try:
            yield waited
        finally:
            current = self._lease()
            if current is not None and current.get("holder") == holder:
                self.store.delete(self.lease_key)

    # --- the breaker -------------------------------------------------------------------------------

    def breaker(self) -> dict[str, Any]:
        raw = self.store.get(self.breaker_key)
        state = json.loads(raw) if raw else {}
        return state if isinstance(state, dict) else {}

    def refused(self, reason: str) -> int:
        state = self.breaker()
        count = int(state.get("refusals", 0)) + 1
        self.store.set(
            self.breaker_key, json.dumps({"refusals": count, "last": self.clock().isoformat(), "reason": reason[:300]})
        )
        return count

    def succeeded(self) -> None:
        if self.store.get(self.breaker_key) is not None:
            self.store.delete(self.breaker_key)
