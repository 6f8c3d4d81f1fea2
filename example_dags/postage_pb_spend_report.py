"""
### Pitney Bowes spend report

Monthly: for every merchant, read last month's `POSTAGE FUND` transactions (every refill, manual or by
the auto-refill rule) from the Pitney Bowes transaction report, and write a CSV and a Markdown table of
the count and total per merchant to `output_folder`. The summary is also the run's XCom.

The merchants come from the `merchants` param, else from the Airflow Variable `postage_pb_merchants`
(a JSON list of postal reporting numbers), else the connection's own merchant; one connection (one
developer account, one token) reads them all. `month` (`YYYY-MM`) reports another month; Pitney Bowes
keeps six months of history.

Example: `airflow variables set postage_pb_merchants '["900001", "900002"]'`
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, Variable, task

from airflow_provider_postage.hooks.postage import PitneyBowesHook
from airflow_provider_postage.protocol.money import format_money

PITNEY_BOWES_CONN_ID = "postage_pitney_bowes"
#: Where the reports go (POSTAGE_PB_REPORT_FOLDER or the ``output_folder`` param change it).
OUTPUT_FOLDER = os.environ.get("POSTAGE_PB_REPORT_FOLDER", "/tmp/postage_pb_spend_report")

with DAG(
    dag_id="postage_pb_spend_report",
    description="Monthly Pitney Bowes postage spend (refills) per merchant, as CSV and Markdown",
    schedule="@monthly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "postage_conn_id": Param(PITNEY_BOWES_CONN_ID, type="string"),
        "merchants": Param([], type="array", description="postal reporting numbers; empty: the Variable"),
        "month": Param("", type="string", description="YYYY-MM; empty: the month before the run's"),
        "output_folder": Param(OUTPUT_FOLDER, type="string"),
    },
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def period(**context: Any) -> dict[str, str]:
        """The month to report: the param's, else the last whole month before the run (a scheduled run
        at 1 November and a manual run on 30 November both report October)."""
        chosen = context["params"]["month"].strip()
        if chosen:
            start = dt.datetime.strptime(chosen, "%Y-%m").replace(tzinfo=dt.timezone.utc)
        else:
            end = context.get("data_interval_end") or context["dag_run"].run_after
            this_month = end.astimezone(dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            start = (this_month - dt.timedelta(days=1)).replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return {"month": f"{start:%Y-%m}", "from": start.isoformat(), "to": end.isoformat()}

    @task
    def merchants(**context: Any) -> list[str]:
        """Read at run time (never at parse time)."""
        listed = context["params"]["merchants"] or Variable.get("postage_pb_merchants", None, deserialize_json=True)
        if not listed:
            listed = [PitneyBowesHook(context["params"]["postage_conn_id"]).settings.postal_reporting_number]
        return [str(merchant) for merchant in listed]

    @task
    def spend(merchant: str, window: dict[str, str], **context: Any) -> dict[str, Any]:
        """One merchant's refills in the month: count and total (an exact decimal string)."""
        hook = PitneyBowesHook(context["params"]["postage_conn_id"], account=merchant)
        start, end = dt.datetime.fromisoformat(window["from"]), dt.datetime.fromisoformat(window["to"])
        found = [t for t in hook.get_transactions(start, end) if t.at < end]  # the report's end is inclusive
        total = sum((t.amount for t in found if t.amount is not None), Decimal(0))
        print(f"{merchant}: {len(found)} refills, {format_money(total)} USD in {window['month']}")
        return {"merchant_id": merchant, "count": len(found), "total": format_money(total)}

    @task
    def report(spends: list[dict[str, Any]], window: dict[str, str], **context: Any) -> dict[str, Any]:
        """The CSV and the Markdown table, and the summary as XCom."""
        rows = [spends[i] for i in range(len(spends))]  # by index: iterating would read one past the end
        count = sum(row["count"] for row in rows)
        total = format_money(sum((Decimal(row["total"]) for row in rows), Decimal(0)))
        folder = Path(context["params"]["output_folder"])
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = folder / f"pb_spend_{window['month']}.csv"
        with csv_path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["merchant_id", "count", "total_usd"])
            writer.writerows([row["merchant_id"], row["count"], row["total"]] for row in rows)
        lines = [
            f"## Pitney Bowes postage funded in {window['month']}",
            "",
            "| merchant | refills | total (USD) |",
            "|---|---:|---:|",
            *(f"| {row['merchant_id']} | {row['count']} | {row['total']} |" for row in rows),
            f"| **all** | **{count}** | **{total}** |",
        ]
        markdown_path = folder / f"pb_spend_{window['month']}.md"
        markdown_path.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return {
            **window,
            "merchants": rows,
            "count": count,
            "total": total,
            "csv": str(csv_path),
            "markdown": str(markdown_path),
        }

    window = period()
    report(spend.partial(window=window).expand(merchant=merchants()), window)
