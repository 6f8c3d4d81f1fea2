"""
### Purchase receipts

Runs after every purchase any `PurchaseCreditOperator` makes, in any DAG: each purchase emits an asset
event on its account's asset `postage://<provider>/<account>` through the asset alias `postage_receipts`,
with the receipt (amount, status, balances before and after, transaction id) in the event's `extra`.
This DAG lists the receipts that triggered it and mails them (`SmtpNotifier`, connection `postage_smtp`;
without that connection the receipts are listed in the task log and the mail is left out, with a note).

The same notifier on the buying tasks' `on_failure_callback` makes sure a failed purchase is never
silent: a card refused, a spend cap reached, the circuit breaker open (the task's error says which, and
what to do).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from airflow.providers.common.compat.assets import AssetAlias
from airflow.providers.common.compat.sdk import DAG, AirflowNotFoundException, BaseHook, task
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

ALERTS_TO = "postage-alerts@example.com"
SMTP_CONN_ID = "postage_smtp"

log = logging.getLogger(__name__)


def _if_smtp_configured(notifier: SmtpNotifier) -> Callable[[Any], None]:
    """Mail where the SMTP connection exists; without it (a fresh install, the demo) say how to turn
    mail on instead of failing the callback with an error."""

    def callback(context: Any) -> None:
        try:
            BaseHook.get_connection(SMTP_CONN_ID)
        except AirflowNotFoundException:
            log.info("No %r connection: not mailed. Add an SMTP connection with that id to mail it.", SMTP_CONN_ID)
            return
        notifier(context)

    return callback


purchase_mail = _if_smtp_configured(
    SmtpNotifier(
        to=ALERTS_TO,
        smtp_conn_id=SMTP_CONN_ID,
        subject="Postage bought: {{ ti.xcom_pull(task_ids='receipts')['total'] }}",
        html_content="{{ ti.xcom_pull(task_ids='receipts')['lines'] | join('<br>') }}",
    )
)
#: For the buying tasks of the other DAGs: ``on_failure_callback=purchase_failed_mail``.
purchase_failed_mail = _if_smtp_configured(
    SmtpNotifier(
        to=ALERTS_TO,
        smtp_conn_id=SMTP_CONN_ID,
        subject="Postage purchase failed: {{ dag.dag_id }}.{{ ti.task_id }}",
        html_content="{{ exception }}",
    )
)

with DAG(
    dag_id="postage_purchase_receipts",
    description="After every postage purchase: list and mail the receipts",
    schedule=[AssetAlias(name="postage_receipts")],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:

    @task(on_success_callback=purchase_mail)
    def receipts(**context: Any) -> dict[str, Any]:
        """The receipts behind this run, one line each; amounts stay decimal strings."""
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        lines = []
        for asset_events in events.values():
            for event in asset_events:
                r = event.extra
                lines.append(
                    f"{r.get('provider')} {r.get('account')}: {r.get('status')} {r.get('amount')} {r.get('currency')}"
                    f" (balance {r.get('balance_before')} -> {r.get('balance_after') or '?'})"
                )
        for line in lines:
            print(line)
        return {"lines": lines, "total": f"{len(lines)} purchase(s)"}

    receipts()
