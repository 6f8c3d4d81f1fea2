"""A third postage service, defined here and nowhere in the package: a postage meter vendor's JSON API,
plugged in through the registry alone. The operators, the sensor in its three modes and the trigger run
against it unchanged -- the proof that adding a service touches no module but its own."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import FakeTaskInstance, conn_uri_env, task_context

from airflow_provider_postage import registry
from airflow_provider_postage.hooks.postage import get_postage_hook
from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.protocol.errors import PostageConfigError, PostageResponseError
from airflow_provider_postage.protocol.flow import Flow, send
from airflow_provider_postage.protocol.http import HttpRequest, normalize_base_url
from airflow_provider_postage.protocol.money import parse_amount, reply_amount
from airflow_provider_postage.protocol.records import POSTAGE, Balance, PurchaseResult
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor
from airflow_provider_postage.services.base import Clock, ConnectionFields, PostageService, utc_now
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger

CONN_ID = "meter_test"
METER_KEY = "meter-key-Quux-8812"


# --- the service: settings, two flows, its facts ---------------------------------------------------------


@dataclass(frozen=True)
class MeterSettings:
    base_url: str
    key: str = field(repr=False)
    verify: bool | str = True


class MeterService(PostageService):
    """A meter vendor: ``GET /meter/balance`` and ``POST /meter/fund`` with an ``Idempotency-Key``."""

    conn_type = "postage_meter"
    provider = "postage_meter"
    hook_name = "Postage meter (test)"
    main_account_type = POSTAGE
    purchase_step = Decimal("5")
    minimum_purchase = Decimal("5")
    idempotent_purchases = True

    def settings(self, fields: ConnectionFields) -> MeterSettings:
        if not fields.password or not fields.host:
            raise PostageConfigError("password", "the meter key and host are required")
        return MeterSettings(normalize_base_url(fields.host, port=fields.port, scheme=fields.schema), fields.password)

    def validate_amount(self, amount: object) -> Decimal:
        return parse_amount(amount, minimum=self.minimum_purchase)

    def _headers(self, settings: MeterSettings) -> dict[str, str]:
        return {"X-Meter-Key": settings.key, "Accept": "application/json"}

    def balances(self, settings: MeterSettings, conn_id: str, clock: Clock = utc_now) -> Flow[list[Balance]]:
        reply = yield from send(HttpRequest("GET", f"{settings.base_url}/meter/balance", self._headers(settings)))
        try:
            available = reply_amount(json.loads(reply.body)["balance"], "balance")
        except (ValueError, KeyError, TypeError):
            raise PostageResponseError(self.provider, reply.status, "no readable balance") from None
        return [Balance(self.provider, conn_id, POSTAGE, None, "USD", available, clock())]

    def purchase(
        self,
        settings: MeterSettings,
        conn_id: str,
        amount: Decimal,
        *,
        transaction_id: str,
        before: Balance | None,
        clock: Clock = utc_now,
    ) -> Flow[PurchaseResult]:
        headers = {**self._headers(settings), "Idempotency-Key": transaction_id}
        body = json.dumps({"amount": str(amount)}).encode()
        request = HttpRequest("POST", f"{settings.base_url}/meter/fund", headers, body, moves_money=True)
        reply = yield from send(request)
        funded = reply_amount(json.loads(reply.body)["funded"], "funded")
        return PurchaseResult(self.provider, conn_id, funded, "USD", transaction_id, "funded")


# --- its server --------------------------------------------------------------------------------------------


class Meter:
    def __init__(self) -> None:
        self.balance = Decimal("7.00")
        self.funds: dict[str, Decimal] = {}
        self.balance_reads = 0
        self.lock = threading.Lock()
        self.raise_after: tuple[int, Decimal] | None = None


def serve(meter: Meter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def reply(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.headers.get("X-Meter-Key") != METER_KEY:
                return self.reply(401, {"error": "key refused"})
            with meter.lock:
                meter.balance_reads += 1
                if meter.raise_after and meter.balance_reads > meter.raise_after[0]:
                    meter.balance = meter.raise_after[1]
                return self.reply(200, {"balance": str(meter.balance)})

        def do_POST(self) -> None:
            if self.headers.get("X-Meter-Key") != METER_KEY:
                return self.reply(401, {"error": "key refused"})
            amount = Decimal(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["amount"])
            key = self.headers["Idempotency-Key"]
            with meter.lock:
                if key not in meter.funds:
                    meter.funds[key] = amount
                    meter.balance += amount
                return self.reply(200, {"funded": str(meter.funds[key])})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    service = registry.register(MeterService())
    state = Meter()
    server = serve(state)
    fields = {"conn_type": service.conn_type, "password": METER_KEY, "host": "127.0.0.1", "schema": "http"}
    monkeypatch.setenv(*conn_uri_env(CONN_ID, **fields, port=server.server_address[1]))
    yield state
    server.shutdown()


# --- the provider's parts against it -----------------------------------------------------------------------


def test_the_hook_reads_the_new_service(meter: Meter) -> None:
    hook = get_postage_hook(CONN_ID)
    assert (hook.conn_type, hook.provider, hook.main_account_type) == ("postage_meter", "postage_meter", POSTAGE)
    [balance] = FetchBalancesOperator(task_id="f", postage_conn_ids=CONN_ID).execute({})
    assert (balance["provider"], balance["available"]) == ("postage_meter", "7.00")


def test_the_operator_tops_up_once_in_the_services_step(meter: Meter, journal_store: Any) -> None:
    ti = FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")
    result = PurchaseCreditOperator(task_id="buy", postage_conn_id=CONN_ID, top_up_to="20").execute(
        task_context(ti, journal_store)
    )
    assert (result["status"], result["amount"], result["balance_after"]) == ("purchased", "15.00", "22.00")
    assert result["transaction_id"] is not None  # an idempotent service reports its key
    again = PurchaseCreditOperator(task_id="buy", postage_conn_id=CONN_ID, top_up_to="20").execute(
        task_context(ti, journal_store)
    )
    assert again["status"] in ("already_applied", "skipped")
    assert list(meter.funds.values()) == [Decimal("15.00")]


def test_the_sensor_pokes_the_new_service(meter: Meter) -> None:
    sensor = BalanceThresholdSensor(task_id="wait", postage_conn_id=CONN_ID, threshold="5")
    assert sensor.poke({}).is_done
    assert not BalanceThresholdSensor(task_id="w2", postage_conn_id=CONN_ID, threshold="50").poke({}).is_done


def test_the_trigger_polls_the_new_service(meter: Meter) -> None:
    meter.raise_after = (2, Decimal("60.00"))

    async def first_event() -> Any:
        runner = BalanceThresholdTrigger(CONN_ID, threshold="50", poke_interval=0.05).run()
        try:
            return await asyncio.wait_for(runner.__anext__(), 20)
        finally:
            await runner.aclose()

    event = asyncio.run(first_event())
    assert event.payload["status"] == "success" and event.payload["balance"]["available"] == "60.00"
    assert meter.balance_reads == 3


def test_the_sensor_in_reschedule_and_deferrable_mode_in_real_dag_runs(
    meter: Meter, dagbag: Any, task_log: Any
) -> None:
    meter.raise_after = (3, Decimal("80.00"))
    run = dagbag.get_dag("postage_wait_reschedule").test(run_conf={"conn_id": CONN_ID, "threshold": "50"})
    assert run.state == "success"
    meter.balance, meter.balance_reads, meter.raise_after = Decimal("7.00"), 0, (4, Decimal("90.00"))
    run = dagbag.get_dag("postage_purchase_then_wait").test(
        run_conf={"conn_id": CONN_ID, "top_up_to": "20", "threshold": "60"}
    )
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    assert list(meter.funds.values()) == [Decimal("15.00")]
    assert meter.balance_reads >= 5  # fetch, buy, the sensor's poke, then the trigger's polls
    assert "running trigger in line" in task_log()  # the sensor really deferred to the trigger
