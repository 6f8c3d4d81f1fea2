"""The purchase ledgers the operators keep in Airflow Variables (``postage_ledger.<provider>.<account>``),
read for the page: the recent purchases and the balance history, merged with the balances the page read.

Only the known fields of a ledger are passed on, each as a string of bounded length, so a ledger holds
nothing the page would show by accident. A ledger that does not parse is reported by its key, not raised.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_postage import registry

LEDGER_PREFIX = "postage_ledger."
STATUSES = ("pending", "purchased", "already_applied", "refused", "unknown")
#: Purchases listed on the page, newest first.
MAX_PURCHASES = 100
#: Points per chart series (ledger and page reads together), newest kept.
MAX_POINTS = 500
_MAX_TEXT = 250

_ENTRY_TEXT = ("conn_id", "currency", "transaction_id", "dag_id", "run_id", "task_id")
_ENTRY_MONEY = ("amount", "balance_before", "balance_after")


@dataclass
class Ledger:
    key: str
    provider: str
    account: str
    conn_id: str | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:_MAX_TEXT]


def _money(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return str(amount) if amount.is_finite() else None


def _time(value: Any) -> str | None:
    """An ISO time in UTC, or None when the value is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat()


def parse_ledger(key: str, raw: str | None) -> Ledger:
    """One ledger Variable; ValueError when it is not a ledger."""
    document = json.loads(raw or "")
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    provider = _text(document.get("provider")) or key[len(LEDGER_PREFIX) :].split(".", 1)[0]
    account = _text(document.get("account")) or key[len(LEDGER_PREFIX) :].partition(".")[2]
    ledger = Ledger(key, provider, account, _text(document.get("conn_id")))
    for item in document.get("entries") or []:
        if not isinstance(item, dict) or _time(item.get("at")) is None:
            continue
        entry: dict[str, Any] = {"at": _time(item.get("at")), "provider": provider, "account": account}
        entry.update({name: _text(item.get(name)) for name in _ENTRY_TEXT})
        entry.update({name: _money(item.get(name)) for name in _ENTRY_MONEY})
        status = _text(item.get("status"))
        entry["status"] = status if status in STATUSES else "unknown"
        map_index = item.get("map_index")
        entry["map_index"] = map_index if isinstance(map_index, int) and not isinstance(map_index, bool) else -1
        entry["conn_id"] = entry["conn_id"] or ledger.conn_id
        ledger.entries.append(entry)
    for item in document.get("balances") or []:
        if not isinstance(item, dict):
            continue
        at, available = _time(item.get("at")), _money(item.get("available"))
        if at is None or available is None:
            continue
        ledger.balances.append(
            {
                "at": at,
                "account_type": _text(item.get("account_type")) or "",
                "available": available,
                "conn_id": _text(item.get("conn_id")) or ledger.conn_id,
            }
        )
    if ledger.conn_id is None and ledger.entries:
        ledger.conn_id = ledger.entries[-1]["conn_id"]
    return ledger


def read_ledgers(session: Any) -> tuple[list[Ledger], list[dict[str, str]]]:
    """Every ledger Variable in the metadata database, and the keys of those that did not parse."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    ledgers: list[Ledger] = []
    problems: list[dict[str, str]] = []
    for variable in session.scalars(select(Variable).where(Variable.key.startswith(LEDGER_PREFIX, autoescape=True))):
        try:
            raw = variable.get_val() if hasattr(variable, "get_val") else variable.val
            ledgers.append(parse_ledger(variable.key, raw))
        except (ValueError, TypeError) as error:
            problems.append({"key": variable.key, "error": f"not a ledger: {type(error).__name__}"})
    return ledgers, problems


def purchases(ledgers: Iterable[Ledger], limit: int = MAX_PURCHASES) -> list[dict[str, Any]]:
    """The most recent purchase attempts of every ledger, newest first."""
    entries = [entry for ledger in ledgers for entry in ledger.entries]
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return entries[:limit]


def _main_account_types() -> dict[str, str]:
    return {service.provider: service.main_account_type for service in registry.services()}


def chart_series(
    ledgers: Iterable[Ledger],
    page_points: Mapping[tuple[str, str], list[dict[str, str]]],
    currencies: Mapping[tuple[str, str], str] | None = None,
) -> list[dict[str, Any]]:
    """One series per (connection id, account type): the ledger's balances and the page's reads merged by
    time, and the purchases marked on the account they fill (the service's main account)."""
    main = _main_account_types()
    points: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    markers: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ledger in ledgers:
        for balance in ledger.balances:
            if balance["conn_id"]:
                key = (balance["conn_id"], balance["account_type"] or main.get(ledger.provider, ""))
                points.setdefault(key, {})[balance["at"]] = {
                    "at": balance["at"],
                    "available": balance["available"],
                    "source": "ledger",
                }
        for entry in ledger.entries:
            if entry["conn_id"]:
                key = (entry["conn_id"], main.get(ledger.provider, ""))
                markers.setdefault(key, []).append(
                    {
                        "at": entry["at"],
                        "amount": entry["amount"],
                        "status": entry["status"],
                        "balance": entry["balance_after"] or entry["balance_before"],
                        "transaction_id": entry["transaction_id"],
                    }
                )
    for key, page in page_points.items():
        for point in page:
            points.setdefault(key, {})[point["at"]] = dict(point)
    series = []
    for key in sorted(set(points) | set(markers)):
        conn_id, account_type = key
        ordered = sorted(points.get(key, {}).values(), key=lambda point: point["at"])[-MAX_POINTS:]
        series.append(
            {
                "id": f"{conn_id}/{account_type}",
                "conn_id": conn_id,
                "account_type": account_type,
                "currency": (currencies or {}).get(key, "USD"),
                "points": ordered,
                "purchases": sorted(markers.get(key, []), key=lambda marker: marker["at"])[-MAX_POINTS:],
            }
        )
    return series
