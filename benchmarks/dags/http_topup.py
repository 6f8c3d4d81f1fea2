"""The same pipeline as ours_topup.py, built from apache-airflow-providers-http as a competent user would:
a token task (the http provider has no token cache), the balance read, the amount worked out in a
task, the refill, and an HttpSensor whose response check compares the balance with the target.

Parse-cost benchmark (benchmarks/bench_parse.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, task

MERCHANT = "/shippingservices/v1/developers/44440000/merchants/900001"
TARGET = Decimal("250")
MAX_AMOUNT = Decimal("500")
BEARER = {
    "Authorization": "Bearer {{ ti.xcom_pull(task_ids='get_token') }}",
    "Accept": "application/json",
}


def postage_balance(response) -> Decimal:
    for account in response.json()["accounts"]:
        if account["accountType"] == "Postage Account":
            return Decimal(str(account["availableBalance"]))
    raise ValueError("no Postage Account in the reply")


with DAG(
    dag_id="bench_http_topup",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
) as dag:
    get_token = HttpOperator(
        task_id="get_token",
        http_conn_id="pb_oauth",  # login = API key, password = API secret
        method="POST",
        endpoint="/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        response_filter=lambda response: response.json()["access_token"],
    )
    fetch = HttpOperator(
        task_id="fetch_balances",
        http_conn_id="pb_api",
        method="GET",
        endpoint=f"{MERCHANT}/account-balance",
        headers=BEARER,
        response_filter=lambda response: response.json()["accounts"],
    )

    @task
    def refill_body(accounts: list[dict]) -> str:
        available = next(Decimal(str(a["availableBalance"])) for a in accounts if a["accountType"] == "Postage Account")
        amount = min(max(TARGET - available, Decimal(1)), MAX_AMOUNT).to_integral_value(rounding="ROUND_CEILING")
        return json.dumps({"amount": int(amount), "currencyCode": "USD"})

    top_up = HttpOperator(
        task_id="top_up",
        http_conn_id="pb_api",
        method="POST",
        endpoint=f"{MERCHANT}/account/fund",
        headers={
            **BEARER,
            "Content-Type": "application/json",
            "X-PB-TransactionId": "{{ (dag.dag_id ~ run_id) | hash | string | truncate(25, True, '') }}",
        },
        data="{{ ti.xcom_pull(task_ids='refill_body') }}",
    )
    wait = HttpSensor(
        task_id="wait_for_funds",
        http_conn_id="pb_api",
        endpoint=f"{MERCHANT}/account-balance",
        headers=BEARER,
        response_check=lambda response: postage_balance(response) >= TARGET,
        poke_interval=60,
        timeout=3600,
        mode="reschedule",  # HttpSensor cannot defer with a response_check
    )
    body = refill_body(fetch.output)
    get_token >> fetch
    body >> top_up >> wait
