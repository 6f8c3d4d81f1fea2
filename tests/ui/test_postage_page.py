"""The Postage page in a real browser on a real Airflow 3: ``airflow standalone`` (API server, scheduler,
DAG processor, triggerer; SimpleAuthManager with an admin and a viewer), the sandbox over HTTPS, Debian's
chromium driven by Playwright. Log in, open Postage from the nav, see the sandbox's balances, the chart,
the purchases of a ledger Variable, press Top up and see the DAG run start; anonymous requests get 401 and
a viewer 403; no secret of the connections reaches a page or a JSON reply.

About two minutes, most of it Airflow starting. Screenshots (light and dark) go to a temporary folder, or
to ``POSTAGE_SCREENSHOT_DIR`` (``POSTAGE_SCREENSHOT_DIR=docs scripts/test --airflow 3 tests/ui`` refreshes
the README's). Chromium: ``POSTAGE_CHROMIUM`` or ``chromium`` on the PATH (``scripts/test`` installs
Debian's; Playwright's own browser download is not used)."""

from __future__ import annotations

import datetime as dt
import json
import os
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
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

#: Distinctive secrets: none may appear in the page, its files or its JSON replies.
C2M_PASSWORD = "Xyzzy-C2M-pass-8812"
CARD_NUMBER = "4000056655665556"
CVV = "739"
PB_SECRET = "Plugh-PB-secret-6604"
WRONG_PB_SECRET = "Wrong-PB-secret-7731"
SECRETS = (C2M_PASSWORD, CARD_NUMBER, PB_SECRET, WRONG_PB_SECRET)
ADMIN_PASSWORD = "admin-pw-4492"
VIEWER_PASSWORD = "viewer-pw-1187"
#: The DAG the ledgers' purchases name (the example funding DAG).
LEDGER_DAG_ID = "postage_scheduled_top_up"
#: The funding DAG the page starts, set with ``[postage] ui_top_up_dag_id``: a stand-in of one quick task,
#: unscheduled, so that its run starts at once (unpausing the example DAG would also start its latest
#: scheduled run, which buys and waits for funds, ahead of ours: ``max_active_runs=1``).
DAG_ID = "postage_ui_test_top_up"
TOP_UP_DAG = f"""
import datetime as dt
from airflow.sdk import DAG, task

with DAG("{DAG_ID}", schedule=None, start_date=dt.datetime(2026, 1, 1), tags=["postage"]):

    @task
    def top_up():
        return "a stand-in for a funding DAG"

    top_up()
"""
ROUTES = (
    "/postage/ui",
    "/postage/static/postage.js",
    "/postage/static/chart.js",
    "/postage/static/postage.css",
    "/postage/api/balances",
    "/postage/api/history",
    f"/postage/api/top-up?dag_id={DAG_ID}",
)

pytestmark = [
    pytest.mark.skipif(not airflow.__version__.startswith("3."), reason="the Postage page is Airflow 3 only"),
    pytest.mark.timeout(400),
]


def chromium_path() -> str:
    path = os.environ.get("POSTAGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium: `apt-get install -y chromium` (scripts/test does it), or set POSTAGE_CHROMIUM")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class World:
    def __init__(self, api: str, sandbox: str, ca_path: str, home: Path) -> None:
        self.api = api
        self.sandbox = sandbox
        self.home = home
        self.sandbox_client = httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=ca_path))
        self.admin = self.client("admin", ADMIN_PASSWORD)
        self.viewer = self.client("viewer", VIEWER_PASSWORD)

    def client(self, username: str, password: str) -> httpx.Client:
        client = httpx.Client(base_url=self.api, timeout=30)
        reply = client.post("/auth/token", json={"username": username, "password": password})
        assert reply.status_code == 201, reply.text
        client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        return client

    def balance_reads(self) -> dict[str, int]:
        requests = self.sandbox_client.get(f"{self.sandbox}/_sandbox/counters").json()["requests"]
        return {name: requests[name] for name in ("c2m_credit", "pb_token", "pb_balance")}


def ledgers(port: int) -> dict[str, dict[str, Any]]:
    """Two ledger Variables as the operators write them: purchases over the last day, with balances."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def at(hours: float) -> str:
        return (now - dt.timedelta(hours=hours)).isoformat()

    run = "scheduled__2026-11-30T06:00:00+00:00"
    entry = {"dag_id": LEDGER_DAG_ID, "run_id": run, "task_id": "top_up", "currency": "USD"}
    c2m_account = f"demo-user@127.0.0.1:{port}"
    pb_account = f"900001@127.0.0.1:{port}"
    return {
        f"postage_ledger.click2mail.{c2m_account}": {
            "version": 1,
            "provider": "click2mail",
            "account": c2m_account,
            "conn_id": "postage_click2mail",
            "entries": [
                {
                    **entry,
                    "at": at(20),
                    "conn_id": "postage_click2mail",
                    "amount": "40.00",
                    "status": "purchased",
                    "transaction_id": None,
                    "map_index": 0,
                    "balance_before": "8.00",
                    "balance_after": "48.00",
                },
                {
                    **entry,
                    "at": at(3),
                    "conn_id": "postage_click2mail",
                    "amount": "95.00",
                    "status": "refused",
                    "transaction_id": None,
                    "map_index": 0,
                    "balance_before": "5.00",
                    "balance_after": None,
                },
            ],
            "balances": [
                {"at": at(22), "account_type": "credit", "available": "8.00"},
                {"at": at(19), "account_type": "credit", "available": "48.00"},
                {"at": at(10), "account_type": "credit", "available": "21.00"},
                {"at": at(4), "account_type": "credit", "available": "5.00"},
            ],
        },
        f"postage_ledger.pitney_bowes.{pb_account}": {
            "version": 1,
            "provider": "pitney_bowes",
            "account": pb_account,
            "conn_id": "postage_pitney_bowes",
            "entries": [
                {
                    **entry,
                    "at": at(18),
                    "conn_id": "postage_pitney_bowes",
                    "amount": "200.00",
                    "status": "purchased",
                    "transaction_id": "refill-7f3a9c2e41d0",
                    "map_index": 1,
                    "balance_before": "50.00",
                    "balance_after": "250.00",
                },
            ],
            "balances": [
                {"at": at(21), "account_type": "postage", "available": "50.00"},
                {"at": at(17), "account_type": "postage", "available": "250.00"},
                {"at": at(6), "account_type": "postage", "available": "12.50"},
            ],
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("airflow-ui")
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(TOP_UP_DAG)  # one small DAG: parsed in seconds
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
    assert sandbox_url.startswith("https://127.0.0.1:") and Path(ca_path).is_file()
    sandbox_port = int(sandbox_url.rsplit(":", 1)[-1])

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import c2m_connection, pb_connection

    (home / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD, "viewer": VIEWER_PASSWORD}))
    port = free_port()
    c2m = c2m_connection(sandbox_url, card_number_secret=CARD_NUMBER, card_cvv_secret=CVV, ca_bundle=ca_path)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__POSTAGE__UI_TOP_UP_DAG_ID": DAG_ID,
        # One of the three postage connections comes from the environment, the others from the database.
        "AIRFLOW_CONN_POSTAGE_CLICK2MAIL": json.dumps({**c2m, "password": C2M_PASSWORD}),
    }
    log = open(home / "standalone.log", "w")  # noqa: SIM115 - closed in the finally below
    airflow_proc = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    api = f"http://localhost:{port}"
    try:
        wait_until(lambda: httpx.get(f"{api}/api/v2/monitor/health", timeout=5).status_code == 200, 240, "the API")
        world = World(api, sandbox_url, ca_path, home)
        for conn_id, fields in (
            ("postage_pitney_bowes", {**pb_connection(sandbox_url, ca_bundle=ca_path), "password": PB_SECRET}),
            ("postage_pb_wrong_secret", {**pb_connection(sandbox_url, ca_bundle=ca_path), "password": WRONG_PB_SECRET}),
            ("not_postage", {"conn_type": "http", "host": "example.invalid", "password": "irrelevant", "extra": {}}),
        ):
            body = {**fields, "connection_id": conn_id, "extra": json.dumps(fields["extra"])}
            reply = world.admin.post("/api/v2/connections", json=body)
            assert reply.status_code in (200, 201), reply.text
        for key, value in ledgers(sandbox_port).items():
            reply = world.admin.post("/api/v2/variables", json={"key": key, "value": json.dumps(value)})
            assert reply.status_code in (200, 201), reply.text
        wait_until(lambda: world.admin.get(f"/api/v2/dags/{DAG_ID}").status_code == 200, 120, "the DAG to be parsed")
        yield world
    finally:
        import psutil

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


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("POSTAGE_SCREENSHOT_DIR")
    folder = (ROOT / configured) if configured and not Path(configured).is_absolute() else Path(configured or "")
    if not configured:
        folder = tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_anonymous_requests_are_refused_on_every_route(world: World) -> None:
    for route in ROUTES:
        reply = httpx.get(world.api + route, timeout=30)
        assert reply.status_code == 401, (route, reply.status_code, reply.text[:200])
        forged = httpx.get(world.api + route, timeout=30, cookies={"_token": "not-a-token"})
        assert forged.status_code in (401, 403), (route, forged.status_code)


def test_a_viewer_may_not_read_balances_nor_start_top_ups(world: World) -> None:
    """Viewers have no connection read (SimpleAuthManager: op and up): every page route is 403. They may
    read the DAG, and are told they may not start its runs."""
    for route in ROUTES:
        reply = world.viewer.get(route)
        expected = 200 if route.startswith("/postage/api/top-up") else 403
        assert reply.status_code == expected, (route, reply.status_code)
    assert world.viewer.get(f"/postage/api/top-up?dag_id={DAG_ID}").json()["may_trigger"] is False
    assert world.admin.get(f"/postage/api/top-up?dag_id={DAG_ID}").json()["may_trigger"] is True


def test_the_page_in_a_browser(world: World, browser: Any, screenshots: Path) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1100}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        # Log in through Airflow's own login form.
        page.goto(world.api + "/")
        page.locator("input[name='username']").fill("admin")
        page.locator("input[name='password']").fill(ADMIN_PASSWORD)
        page.locator("button[type='submit']").click()
        page.wait_for_url(lambda url: "/login" not in url)

        # The nav entry opens the page inside the Airflow UI.
        page.get_by_role("link", name="Postage").first.click()
        page.wait_for_url("**/plugin/postage")
        frame = page.frame_locator("iframe").first
        accounts = frame.locator("#accounts")
        c2m = accounts.locator("tr.account[data-conn-id='postage_click2mail'] td.available")
        c2m.wait_for()
        assert c2m.inner_text() == "5.00 USD"
        pb = accounts.locator(
            "tr.account[data-conn-id='postage_pitney_bowes'][data-account-type='postage'] td.available"
        )
        assert pb.inner_text() == "12.50 USD"
        line = "tr.account[data-conn-id='postage_pitney_bowes'][data-account-type='line_of_credit'] td.available"
        assert accounts.locator(line).inner_text() == "500.00 USD"
        wrong = accounts.locator("tr.account-error[data-conn-id='postage_pb_wrong_secret']")
        assert "Authentication" in wrong.inner_text() or "401" in wrong.inner_text(), wrong.inner_text()
        assert accounts.locator("[data-conn-id='not_postage']").count() == 0

        # The chart: drawn lines, and the ledger's purchases marked on them.
        frame.locator("body[data-history-loaded='true']").wait_for()
        c2m_chart = frame.locator("figure[data-series='postage_click2mail/credit'] svg")
        path = c2m_chart.locator("path.pc-line").get_attribute("d") or ""
        assert path.startswith("M") and path.count("L") >= 4, path  # 4 ledger points and the page's read
        assert c2m_chart.locator("circle.pc-mark.purchased").count() == 1
        assert c2m_chart.locator("circle.pc-mark.refused").count() == 1
        pb_chart = frame.locator("figure[data-series='postage_pitney_bowes/postage'] svg")
        assert pb_chart.locator("circle.pc-mark.purchased").count() == 1

        # The purchases table, newest first, linking to the DAG runs.
        rows = frame.locator("#purchases tr.purchase")
        assert rows.count() == 3
        texts = [rows.nth(i).inner_text() for i in range(3)]
        assert "refused" in texts[0] and "95.00 USD" in texts[0]
        assert "refill-7f3a9c2e41d0" in texts[1] and "200.00 USD" in texts[1]
        href = rows.nth(1).locator("a").get_attribute("href") or ""
        assert href.endswith(f"/dags/{LEDGER_DAG_ID}/runs/scheduled__2026-11-30T06%3A00%3A00%2B00%3A00"), href

        # However many look, each account is read once per refresh interval (60 s); a failing one too.
        reads = world.balance_reads()
        assert (reads["c2m_credit"], reads["pb_balance"]) == (1, 1), reads
        for _ in range(3):
            page.reload()
            page.frame_locator("iframe").first.locator("body[data-balances-loaded='true']").wait_for()
        for _ in range(5):
            assert world.admin.get("/postage/api/balances").status_code == 200
        assert world.balance_reads() == reads

        # Top up: the page starts the funding DAG through Airflow's REST API, as the logged-in user, after
        # a confirmation (the UI's iframe sandbox allows no window.confirm()).
        assert world.admin.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        frame = page.frame_locator("iframe").first
        assert frame.locator("#top-up-dag").input_value() == DAG_ID  # the configured funding DAG
        frame.locator("#top-up-dag").dispatch_event("change")  # checked again, now unpaused
        frame.locator("#top-up-button:not([disabled])").click()
        frame.locator("#top-up-go").click()
        status = frame.locator("#top-up-status[data-run-id]")
        status.wait_for()
        run_id = status.get_attribute("data-run-id") or ""
        run = world.admin.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
        assert run["run_type"] == "manual" and "Postage page by admin" in (run["note"] or ""), run
        wait_until(
            lambda: (
                world.admin.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"] in ("running", "success")
            ),
            90,
            "the run to start",
        )

        # Nothing secret anywhere: the page, its files, its JSON.
        shown = [page.content(), frame.locator("html").inner_html()]
        shown += [world.admin.get(route).text for route in ROUTES]
        for secret in SECRETS:
            assert not any(secret in text for text in shown), f"{secret} shown"
        assert not any(f'"{CVV}"' in text or f">{CVV}<" in text for text in shown)

        # Light, then dark (the system's preference; the Airflow UI follows it too).
        page.screenshot(path=str(screenshots / "postage-page.png"))
        background_light = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        page.emulate_media(color_scheme="dark")
        page.wait_for_timeout(500)
        background_dark = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        assert background_light == "rgb(255, 255, 255)" and background_dark == "rgb(11, 17, 32)"
        page.screenshot(path=str(screenshots / "postage-page-dark.png"))

        # The run's link moves the Airflow UI around the page to the run.
        frame.locator("#top-up-status a.ui-link").click()
        page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
        page.locator("iframe").wait_for(state="detached")  # the run's page replaced the Postage page
    finally:
        context.close()
        world.admin.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": True})
