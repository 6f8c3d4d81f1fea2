"""End to end on a real Airflow: scheduler, DAG processor, triggerer and API server (``airflow
standalone``, LocalExecutor, SQLite) run the example DAGs against the sandbox, triggered through the
REST API as a user would. Slow (a couple of minutes), so it runs once, on Airflow 3 only: the REST API
v2 and ``airflow standalone``'s process set are Airflow 3's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import airflow
import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
#: Distinctive secrets: after the runs, none may appear in any file Airflow wrote (logs, the metadata
#: database with its XComs, rendered fields, serialized DAGs and trigger rows).
C2M_PASSWORD = "Xyzzy-C2M-pass-4417"
CARD_NUMBER = "4000056655665556"
CVV = "739"
PB_SECRET = "Plugh-PB-secret-9932"
WRONG_PB_SECRET = "Wrong-PB-secret-5150"
SANDBOX_TOKEN = re.compile(rb"sbxtok-[A-Za-z0-9_-]{20,}")

#: Bought funds show this long after the purchase: longer than a LocalExecutor takes to start the
#: sensor after the purchase task, so the sensor's first poke misses them and it must defer.
SETTLE_SECONDS = 15

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="airflow standalone with the REST API v2 is Airflow 3"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class World:
    def __init__(self, api: str, sandbox: str, home: Path, env: dict[str, str], ca_path: str) -> None:
        self.api = api
        self.sandbox = sandbox
        self.home = home
        self.env = env
        self.ca_path = ca_path
        self.sandbox_client = httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=ca_path))
        self.client = httpx.Client(timeout=30)
        token = self.client.get(f"{api}/auth/token").json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def counters(self) -> dict[str, Any]:
        return self.sandbox_client.get(f"{self.sandbox}/_sandbox/counters").json()

    def balances(self) -> dict[str, Any]:
        return self.sandbox_client.get(f"{self.sandbox}/_sandbox/state").json()

    def run_dag(self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 240) -> list[dict[str, Any]]:
        """Unpause, trigger one run through the REST API, and wait until every run of the DAG is done.

        Unpausing a cron-scheduled DAG also makes the scheduler start its latest interval's run: the
        assertions hold for both together (e.g. exactly one purchase, whichever run made it)."""
        assert self.client.patch(f"{self.api}/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        reply = self.client.post(
            f"{self.api}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.client.get(f"{self.api}/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
            if all(run["state"] in ("success", "failed") for run in runs):
                assert (
                    self.client.patch(f"{self.api}/api/v2/dags/{dag_id}", json={"is_paused": True}).status_code == 200
                )
                return runs
            time.sleep(1)
        raise AssertionError(f"{dag_id} runs did not finish in {timeout} s")

    def deferred(self, dag_id: str, runs: list[dict[str, Any]], task_id: str) -> bool:
        """A triggerer log next to the task's log: the task really deferred and the triggerer ran it."""
        return any(self.trigger_logs(dag_id, run["dag_run_id"], task_id) for run in runs)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self.client.get(f"{self.api}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return reply.json()["task_instances"]

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(folder.rglob("*.log.trigger.*.log"))


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("airflow-standalone")
    seed = home / "sandbox-seed.json"
    seed.write_text(
        json.dumps(
            {
                "include_defaults": True,
                "c2m_accounts": [{"username": "demo-user", "password": C2M_PASSWORD, "balance": "5.00"}],
                "pb_credentials": [{"api_key": "demo-api-key", "api_secret": PB_SECRET, "developer_id": "44440000"}],
            }
        )
    )
    sandbox_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_postage.sandbox",
            "--port",
            "0",
            "--settle-seconds",
            str(SETTLE_SECONDS),
            "--tls",
            "--ca-dir",
            str(home),
            "--seed",
            str(seed),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sandbox_proc.stdout is not None
    sandbox_url = sandbox_proc.stdout.readline().strip().rsplit(" ", 1)[-1]
    ca_path = sandbox_proc.stdout.readline().strip().rsplit(" ", 1)[-1]
    assert sandbox_url.startswith("https://127.0.0.1:") and Path(ca_path).is_file()  # HTTPS, as the real APIs

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import c2m_connection, pb_connection

    # Balances polled every second, not every minute: the demo's cluster policy in the home's config/.
    (home / "config").mkdir(exist_ok=True)
    shutil.copy(ROOT / "scripts" / "airflow_local_settings.py", home / "config" / "airflow_local_settings.py")
    c2m_secrets = {"card_number_secret": CARD_NUMBER, "card_cvv_secret": CVV, "ca_bundle": ca_path}
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_POSTAGE_CLICK2MAIL": json.dumps(
            {**c2m_connection(sandbox_url, **c2m_secrets), "password": C2M_PASSWORD}
        ),
        "AIRFLOW_CONN_POSTAGE_PITNEY_BOWES": json.dumps(
            {**pb_connection(sandbox_url, ca_bundle=ca_path), "password": PB_SECRET}
        ),
        "AIRFLOW_CONN_POSTAGE_PB_WRONG_SECRET": json.dumps(
            {**pb_connection(sandbox_url, ca_bundle=ca_path), "password": WRONG_PB_SECRET}
        ),
        "AIRFLOW_VAR_POSTAGE_ACCOUNTS": json.dumps(
            [{"postage_conn_id": "postage_click2mail", "top_up_to": "120"}, "postage_pitney_bowes"]
        ),
    }
    log = open(home / "standalone.log", "w")  # noqa: SIM115 - closed in the finally below
    airflow_proc = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    api = f"http://localhost:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{api}/api/v2/monitor/health", timeout=5).status_code == 200, 240, "the API server"
        )
        world = World(api, sandbox_url, home, env, ca_path)
        wanted = {
            "postage_scheduled_top_up",
            "postage_shipping_gate",
            "postage_many_accounts",
            "postage_low_balance_top_up",
            "postage_purchase_receipts",
        }
        wait_until(
            lambda: wanted <= {d["dag_id"] for d in world.client.get(f"{api}/api/v2/dags").json()["dags"]},
            180,
            "the example DAGs to be parsed",
        )
        # The receipts DAG runs on the asset events every purchase emits: unpaused before any purchase.
        reply = world.client.patch(f"{api}/api/v2/dags/postage_purchase_receipts", json={"is_paused": False})
        assert reply.status_code == 200, reply.text
        yield world
    finally:
        root = psutil.Process(airflow_proc.pid)
        family = [root, *root.children(recursive=True)]
        os.killpg(airflow_proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=10)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        sandbox_proc.terminate()
        sandbox_proc.wait(timeout=10)
        log.close()
        leftovers = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not leftovers, f"processes left behind: {leftovers}"


def test_scheduled_top_up_buys_waits_deferred_and_reports(world: World) -> None:
    runs = world.run_dag("postage_scheduled_top_up")
    assert {run["state"] for run in runs} == {"success"}, (world.home / "standalone.log").read_text()[-5000:]
    counters = world.counters()
    assert [(p["username"], p["amount"]) for p in counters["purchases"]] == [("demo-user", "95.00")]
    assert [(r["prn"], r["amount"]) for r in counters["refills"]] == [("900001", "238.00")]
    assert world.deferred("postage_scheduled_top_up", runs, "wait_for_funds"), "the sensor never deferred"
    state = world.balances()
    assert state["c2m"]["accounts"]["demo-user"]["balance"] == "100.00"
    assert state["pb"]["merchants"]["900001"]["available_balance"] == "250.50"


def test_shipping_gate_refills_from_line_of_credit(world: World) -> None:
    before = len(world.counters()["refills"])
    runs = world.run_dag("postage_shipping_gate", {"job_cost": "400.00"})
    assert [run["state"] for run in runs] == ["success"]
    refills = world.counters()["refills"][before:]
    assert [(r["amount"], r["source"]) for r in refills] == [("150.00", "line_of_credit")]
    assert world.deferred("postage_shipping_gate", runs, "wait_for_postage"), "the sensor never deferred"
    ship = [
        ti for ti in world.task_instances("postage_shipping_gate", runs[0]["dag_run_id"]) if ti["task_id"] == "ship"
    ]
    assert [ti["state"] for ti in ship] == ["success"]
    assert world.balances()["pb"]["merchants"]["900001"]["available_balance"] == "400.50"


def test_many_accounts_from_variable(world: World) -> None:
    purchases_before = len(world.counters()["purchases"])
    refills_before = len(world.counters()["refills"])
    runs = world.run_dag("postage_many_accounts")
    assert {run["state"] for run in runs} == {"success"}
    counters = world.counters()
    assert [p["amount"] for p in counters["purchases"][purchases_before:]] == ["20.00"]  # target 120 from the Variable
    assert counters["refills"][refills_before:] == []  # 400.50 is above the default target of 100.00
    for run in runs:
        tops = [
            ti
            for ti in world.task_instances("postage_many_accounts", run["dag_run_id"])
            if ti["task_id"] == "fund.top_up"
        ]
        assert sorted(ti["map_index"] for ti in tops) == [0, 1]


def test_low_balance_watch_tops_up_when_the_balance_falls(world: World) -> None:
    """Airflow 3's event-driven shape: the asset watcher on the triggerer starts the run by itself."""
    dag_id = "postage_low_balance_top_up"
    purchases_before = len(world.counters()["purchases"])
    assert world.client.patch(f"{world.api}/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    time.sleep(5)  # the watcher sees 120.00, above the low-water mark: armed, no run
    assert world.client.get(f"{world.api}/api/v2/dags/{dag_id}/dagRuns").json()["total_entries"] == 0
    world.sandbox_client.post(f"{world.sandbox}/_sandbox/c2m/accounts/demo-user", json={"balance": "30.00"})

    def one_finished_run() -> bool:
        runs = world.client.get(f"{world.api}/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
        return len(runs) >= 1 and all(run["state"] in ("success", "failed") for run in runs)

    wait_until(one_finished_run, 180, "the watcher's DAG run")
    runs = world.client.get(f"{world.api}/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
    assert [(run["state"], run["run_type"]) for run in runs] == [("success", "asset_triggered")]
    assert [p["amount"] for p in world.counters()["purchases"][purchases_before:]] == ["70.00"]
    assert world.balances()["c2m"]["accounts"]["demo-user"]["balance"] == "100.00"


def test_a_refused_secret_fails_the_task_with_the_api_message(world: World) -> None:
    runs = world.run_dag("postage_shipping_gate", {"postage_conn_id": "postage_pb_wrong_secret", "job_cost": "1.00"})
    failed = [run for run in runs if run["conf"].get("postage_conn_id") == "postage_pb_wrong_secret"]
    assert [run["state"] for run in failed] == ["failed"]
    logs = world.home / "logs" / "dag_id=postage_shipping_gate" / f"run_id={failed[0]['dag_run_id']}"
    text = "\n".join(path.read_text() for path in logs.rglob("*.log"))
    assert "1000032" in text and "Authentication error" in text  # the API's code and message reach the log


def test_every_purchase_left_a_receipt_and_the_receipts_dag_ran(world: World) -> None:
    """Purchases emit asset events on ``postage://<provider>/<account>`` (through the ``postage_receipts``
    alias); the DAG scheduled on that alias runs."""
    events = world.client.get(f"{world.api}/api/v2/assets/events", params={"limit": 100}).json()["asset_events"]
    receipts = [e for e in events if e["uri"].startswith("postage://") and "amount" in (e["extra"] or {})]
    assert receipts, events
    assert {e["extra"]["status"] for e in receipts} <= {"purchased", "already_applied"}
    assert all(CARD_NUMBER not in json.dumps(e) for e in receipts)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = world.client.get(f"{world.api}/api/v2/dags/postage_purchase_receipts/dagRuns").json()["dag_runs"]
        if any(run["state"] == "success" for run in runs):
            break
        time.sleep(2)
    assert any(run["state"] == "success" for run in runs), runs


def test_card_data_is_hidden_by_the_rest_api_and_the_cli(world: World) -> None:
    """A ``click2mail`` connection in the metadata database, created through the REST API as the UI does:
    reading it back through the REST API (what the UI's edit form shows) or ``airflow connections list``
    never shows the card."""
    from conftest import c2m_connection

    fields = c2m_connection(world.sandbox, card_number_secret=CARD_NUMBER, card_cvv_secret=CVV)
    body = {
        "connection_id": "c2m_in_db",
        "conn_type": "click2mail",
        "login": fields["login"],
        "password": C2M_PASSWORD,
        "host": fields["host"],
        "extra": json.dumps(fields["extra"]),
    }
    created = world.client.post(f"{world.api}/api/v2/connections", json=body)
    assert created.status_code in (200, 201), created.text
    try:
        shown = world.client.get(f"{world.api}/api/v2/connections/c2m_in_db").json()
        extra = json.loads(shown["extra"])
        assert (extra["card_number_secret"], extra["card_cvv_secret"], shown["password"]) == ("***", "***", "***")
        assert extra["billing_zip"] == fields["extra"]["billing_zip"]  # the rest stays readable
        listed = world.client.get(f"{world.api}/api/v2/connections").text
        assert CARD_NUMBER not in created.text + json.dumps(shown) + listed
        # The CLI: `connections add` prints the new connection back with the card hidden, and `connections
        # list` shows ids only. (``connections get``, ``list --show-values`` -- even with ``--hide-sensitive``,
        # whose URI column keeps the extras -- and ``export`` print every field in clear, the password
        # included: administrators' commands with the database's key, documented in docs/security.md.)
        cli = str(VENV_BIN / "airflow")
        # `connections import` from a file, as the README advises: `connections add --conn-json` would leave
        # the card in Airflow's CLI audit log (its redaction looks at top-level keys only).
        conn_file = world.home / "c2m_by_cli.json"
        conn = {k: v for k, v in body.items() if k != "connection_id"}
        conn_file.write_text(json.dumps({"c2m_by_cli": {**conn, "extra": fields["extra"]}}))
        for command in (
            ["connections", "import", str(conn_file)],
            ["connections", "list", "-o", "json"],
        ):
            done = subprocess.run(
                [cli, *command], env=world.env, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, done.stderr[-2000:]
            assert "c2m_by_cli" in done.stdout
            assert CARD_NUMBER not in done.stdout + done.stderr and C2M_PASSWORD not in done.stdout
            assert not re.search(r"card_cvv_secret\W{1,6}" + CVV, done.stdout)
    finally:
        (world.home / "c2m_by_cli.json").unlink(missing_ok=True)
        world.client.delete(f"{world.api}/api/v2/connections/c2m_in_db")
        world.client.delete(f"{world.api}/api/v2/connections/c2m_by_cli")


def test_no_secret_in_anything_airflow_wrote(world: World) -> None:
    """Runs last: logs, the SQLite metadata database (XComs, rendered template fields, serialized DAGs,
    trigger rows, task instance notes) and Airflow's own console output, scanned byte for byte."""
    files = [path for path in world.home.rglob("*") if path.is_file() and path.name != "sandbox-seed.json"]
    assert any(path.name.startswith("airflow.db") for path in files)
    assert any(".log.trigger." in path.name for path in files)
    leaks = []
    for path in files:
        data = path.read_bytes()
        for secret in (C2M_PASSWORD, CARD_NUMBER, PB_SECRET, WRONG_PB_SECRET):
            if secret.encode() in data:
                leaks.append(f"{secret} in {path}")
        if SANDBOX_TOKEN.search(data):
            leaks.append(f"a Pitney Bowes token in {path}")
        if re.search(rb"(?i)(cvv|billingCvv)[^A-Za-z0-9]{0,6}" + CVV.encode(), data):
            leaks.append(f"the CVV in {path}")
    assert not leaks, leaks
