"""The main job, offline: start the local sandbox, read both services' balances through the hooks,
buy Click2Mail credit and refill the Pitney Bowes postage account, and print the balances again.

Run it with ``scripts/demo`` (which sets up the virtualenv first)."""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="postage-demo-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_postage.hooks.postage import get_postage_hook
from airflow_provider_postage.operators.postage import balance_table
from airflow_provider_postage.sandbox import SandboxServer, state

DEMO_BILLING = {
    "billing_name": "Demo User",
    "billing_address1": "221B Baker St",
    "billing_city": "Springfield",
    "billing_state": "MO",
    "billing_zip": "34567",
    "card_number": "4111111111111111",  # Click2Mail's staging test card
    "card_exp_month": "12",
    "card_exp_year": "2030",
    "card_cvv": "123",
    "card_type": "VI",
}


def main() -> int:
    with SandboxServer() as sandbox:
        print(f"Sandbox serving Click2Mail and Pitney Bowes at {sandbox.url}\n")
        connections = {
            "demo_click2mail": {
                "conn_type": "click2mail",
                "login": state.DEFAULT_C2M_USERNAME,
                "password": state.DEFAULT_C2M_PASSWORD,
                "host": sandbox.url,
                "extra": {"environment": "staging", **DEMO_BILLING},
            },
            "demo_pitney_bowes": {
                "conn_type": "pitney_bowes",
                "login": state.DEFAULT_PB_API_KEY,
                "password": state.DEFAULT_PB_API_SECRET,
                "host": sandbox.url,
                "extra": {
                    "developer_id": state.DEFAULT_PB_DEVELOPER_ID,
                    "postal_reporting_number": state.DEFAULT_PB_PRN,
                },
            },
        }
        for conn_id, fields in connections.items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
        hooks = [get_postage_hook(conn_id) for conn_id in connections]

        print("Balances before:")
        print(balance_table([b for hook in hooks for b in hook.get_balances()]) + "\n")

        purchases = [
            hooks[0].purchase_credit("20.00"),
            hooks[1].purchase_credit(50),
        ]
        print("Purchases:")
        for result in purchases:
            line = result.to_dict()
            print(
                f"  {line['conn_id']:<18} {line['provider']:<13} {line['amount']:>8} {line['currency']}  "
                f"{line['description'] or ''} {line['transaction_id'] or ''}".rstrip()
            )
        print()
        print("Balances after:")
        print(balance_table([b for hook in hooks for b in hook.get_balances()]))
        counters = sandbox.state.counters()
        print(
            f"\nSandbox saw {len(counters['purchases'])} credit purchase(s), {len(counters['refills'])} refill(s), "
            f"{counters['tokens_issued']} token(s) issued."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
