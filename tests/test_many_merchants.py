"""One Pitney Bowes connection (one developer account, one token) serving many merchants: the optional
``postal_reporting_number`` of the operators, the sensor and the triggers overrides the connection's."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from conftest import C2M_CONN_ID, PB_CONN_ID, FakeTaskInstance, task_context

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.sandbox import SandboxState
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger

OTHER = "900002"  # the sandbox's second merchant: postage only, 457.22


def test_fetch_reads_another_merchant_through_the_same_connection(connections: SandboxState) -> None:
    [balance] = FetchBalancesOperator(task_id="f", postage_conn_ids=PB_CONN_ID, postal_reporting_number=OTHER).execute(
        {}
    )
    assert (balance["conn_id"], balance["account_number"], balance["available"]) == (PB_CONN_ID, "****6051", "457.22")


def test_a_refill_goes_to_the_named_merchant_and_a_retry_stays_with_it(
    connections: SandboxState, journal_store: Any
) -> None:
    ti = FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")
    result = PurchaseCreditOperator(
        task_id="buy", postage_conn_id=PB_CONN_ID, amount="20", postal_reporting_number=OTHER
    ).execute(task_context(ti, journal_store))
    assert (result["status"], result["account"], result["balance_after"]) == ("purchased", OTHER, "477.22")
    assert [(r.prn, r.amount) for r in connections.refills] == [(OTHER, Decimal("20.00"))]
    assert connections.pb_balance() == Decimal("12.50")  # the connection's own merchant is untouched


def test_the_sensor_and_its_trigger_watch_the_named_merchant(connections: SandboxState) -> None:
    sensor = BalanceThresholdSensor(
        task_id="w", postage_conn_id=PB_CONN_ID, threshold="400", postal_reporting_number=OTHER
    )
    assert sensor.poke({}).is_done  # 457.22; the connection's own merchant holds 12.50
    trigger = BalanceThresholdTrigger(PB_CONN_ID, threshold="400", poke_interval=0.1, postal_reporting_number=OTHER)
    assert trigger.serialize()[1]["postal_reporting_number"] == OTHER

    async def first() -> Any:
        events = trigger.run()
        try:
            return (await asyncio.wait_for(events.__anext__(), 20)).payload
        finally:
            await events.aclose()

    payload = asyncio.run(first())
    assert payload["status"] == "success" and payload["balance"]["available"] == "457.22"


def test_many_merchants_share_one_token(connections: SandboxState) -> None:
    for prn in ("900001", OTHER) * 3:
        FetchBalancesOperator(task_id="f", postage_conn_ids=PB_CONN_ID, postal_reporting_number=prn).execute({})
    assert connections.tokens_issued == 1


def test_a_click2mail_connection_refuses_a_merchant_before_any_request(connections: SandboxState) -> None:
    with pytest.raises(PostageConfigError, match="hold one account") as caught:
        FetchBalancesOperator(task_id="f", postage_conn_ids=C2M_CONN_ID, postal_reporting_number=OTHER).execute({})
    assert caught.value.field == "postal_reporting_number"
    assert connections.request_count("c2m_credit") == 0
