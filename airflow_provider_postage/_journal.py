"""Where a purchase writes down what it is about to do, so that the task's next try can tell whether
it went through. On Airflow 3.3+ that is the task instance's own ``task_state_store`` (kept across
tries); before 3.3, an Airflow Variable named after the task instance.

An entry is *open* while a purchase's outcome is not known. Once it is, the task state store keeps the
result as a *done* entry, so that a try started after a crash between the purchase and the task's
success (or a cleared task) reports the purchase instead of buying again. The Variable journal of
Airflow 2.11 is deleted instead (Variables would pile up, one per purchase), which leaves that short
window open there."""

from __future__ import annotations

import json
from typing import Any, Protocol

_STATE_KEY = "postage_purchase_intent"
_VARIABLE_PREFIX = "postage_purchase_intent__"


class PurchaseJournal(Protocol):
    def get(self) -> dict[str, Any] | None: ...

    def put(self, entry: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...

    def complete(self, result: dict[str, Any]) -> None: ...


def is_done(entry: dict[str, Any] | None) -> bool:
    return bool(entry and entry.get("done"))


class _TaskStateJournal:
    def __init__(self, store: Any) -> None:
        self._store = store

    def get(self) -> dict[str, Any] | None:
        value = self._store.get(_STATE_KEY)
        return value if isinstance(value, dict) else None

    def put(self, entry: dict[str, Any]) -> None:
        from airflow.sdk.execution_time.context import NEVER_EXPIRE

        self._store.set(_STATE_KEY, entry, retention=NEVER_EXPIRE)

    def clear(self) -> None:
        self._store.delete(_STATE_KEY)

    def complete(self, result: dict[str, Any]) -> None:
        self._store.set(_STATE_KEY, {"done": True, "result": result})  # kept for the default retention


def _runner_needed(error: ImportError) -> Exception:
    from airflow.providers.common.compat.sdk import AirflowFailException

    return AirflowFailException(
        "PurchaseCreditOperator keeps its purchase journal in Airflow's task state, which only a task runner "
        "provides: run it in a DAG run (dag.test() in a unit test), not by calling execute() directly "
        f"({error})"
    )


class _VariableJournal:
    def __init__(self, name: str) -> None:
        self.name = name

    def get(self) -> dict[str, Any] | None:
        from airflow.providers.common.compat.sdk import Variable

        try:
            raw = Variable.get(self.name, None)  # positional: the keyword differs between Airflow 2 and 3
        except ImportError as error:  # Airflow 3 outside a task runner: no supervisor to ask
            raise _runner_needed(error) from None
        return json.loads(raw) if raw else None

    def put(self, entry: dict[str, Any]) -> None:
        from airflow.providers.common.compat.sdk import Variable

        try:
            Variable.set(self.name, json.dumps(entry), description="postage purchase in progress; see the task log")
        except ImportError as error:
            raise _runner_needed(error) from None

    def clear(self) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.delete(self.name)

    def complete(self, result: dict[str, Any]) -> None:
        self.clear()


def purchase_journal(context: Any, purchase_key: str) -> PurchaseJournal:
    store = context.get("task_state_store") if hasattr(context, "get") else None
    if store is not None:
        return _TaskStateJournal(store)
    return _VariableJournal(f"{_VARIABLE_PREFIX}{purchase_key}")


def journal_location(context: Any, purchase_key: str) -> str:
    """Where a person finds (and may delete) the entry, for error messages."""
    if hasattr(context, "get") and context.get("task_state_store") is not None:
        return f"the task instance's task state store, key {_STATE_KEY!r}"
    return f"the Airflow Variable {_VARIABLE_PREFIX}{purchase_key!s}"
