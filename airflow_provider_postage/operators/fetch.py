"""Reading balances: one operator over any number of postage connections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_postage.hooks.postage import get_postage_hook
from airflow_provider_postage.protocol.errors import PostageValidationError
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import Balance

__all__ = ["FetchBalancesOperator", "balance_table"]


def balance_table(balances: list[Balance]) -> str:
    """A fixed-width table for the task log."""
    rows = [("connection", "provider", "account", "number", "available", "currency")]
    rows += [
        (b.conn_id, b.provider, b.account_type, b.account_number or "-", format_money(b.available), b.currency)
        for b in balances
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i == 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    lines = [line(row) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class FetchBalancesOperator(BaseOperator):
    """Read the balances of every account behind one or more connections (either type).

    Returns (XCom) a list of balance dicts, amounts as decimal strings; nothing secret, no raw payload.
    Maps well: ``FetchBalancesOperator.partial(task_id=...).expand(postage_conn_ids=[...])``.

    :param postage_conn_ids: a connection id or a list of them (templated).
    :param postal_reporting_number: read this Pitney Bowes merchant instead of the connection's own
        (templated): one connection, one token, many merchants.
    :param hook_params: extra keyword arguments for the hooks (e.g. ``timeout``, ``max_attempts``).
    """

    template_fields: Sequence[str] = ("postage_conn_ids", "postal_reporting_number")
    ui_color = "#e6f2ff"

    def __init__(
        self,
        *,
        postage_conn_ids: str | list[str],
        postal_reporting_number: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postage_conn_ids = postage_conn_ids
        self.postal_reporting_number = postal_reporting_number
        self.hook_params = hook_params or {}

    def execute(self, context: Context) -> list[dict[str, Any]]:
        conn_ids = [self.postage_conn_ids] if isinstance(self.postage_conn_ids, str) else list(self.postage_conn_ids)
        if not conn_ids:
            raise PostageValidationError("postage_conn_ids", "no connection ids given")
        balances: list[Balance] = []
        for conn_id in conn_ids:
            hook = get_postage_hook(conn_id, account=self.postal_reporting_number or None, **self.hook_params)
            balances.extend(hook.get_balances())
        self.log.info("Balances:\n%s", balance_table(balances))
        return [balance.to_dict() for balance in balances]
