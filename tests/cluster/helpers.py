"""What the cluster tests share: the :class:`Cluster` they drive and :data:`MEASURED`, the numbers they report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

#: What the tests measured, printed in the terminal summary (and in the report of the run).
MEASURED: dict[str, str] = {}


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Cluster:
    """The running cluster, through its APIs, its database and its process table."""

    def __init__(self) -> None:
        sys.path.insert(0, str(SCRIPTS))
        import _cluster
        import _cluster_world

        self.ops = _cluster
        self.world = _cluster_world
        self.api = _cluster.api_client()
        self.sandbox = _cluster.sandbox_client()
        self._db: Any = None

    # --- metadata database (read-only queries) ---
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        if self._db is None or self._db.closed:
            state = self.ops.load_state()
            self._db = psycopg2.connect(
                host="127.0.0.1", port=self.ops.PG_PORT, dbname="airflow", user="airflow", password=state["db_password"]
            )
            self._db.autocommit = True
        with self._db.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
        rows = self.sql(
            "SELECT map_index, state, try_number, hostname FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
            dag_id,
            run_id,
            task_id,
        )
        return {row[0]: {"state": row[1], "try_number": row[2], "hostname": row[3]} for row in rows}

    def states(self, dag_id: str, run_id: str, task_id: str) -> dict[str | None, int]:
        rows = self.sql(
            "SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s "
            "GROUP BY state",
            dag_id,
            run_id,
            task_id,
        )
        return {state: count for state, count in rows}

    # --- the sandbox ---
    def counters(self) -> dict[str, Any]:
        return dict(self.sandbox.get("/_sandbox/counters").json())

    def settle(self, seconds: float) -> None:
        assert self.sandbox.post("/_sandbox/settings", json={"settle_seconds": seconds}).status_code == 200

    def set_balance(self, conn_id: str, amount: str) -> None:
        kind, account = self.world.account_of(conn_id)
        if kind == "c2m":
            reply = self.sandbox.post(f"/_sandbox/c2m/accounts/{account}", json={"balance": amount})
        else:
            reply = self.sandbox.post(f"/_sandbox/pb/merchants/{account}", json={"available_balance": amount})
        assert reply.status_code == 200, reply.text

    def forget_purchases(self, conn_ids: list[str]) -> None:
        """Delete the provider's purchase ledger of these accounts (Variables ``postage_ledger.<provider>.
        <account>``, docs/funding.md), for a test that starts them over from the sandbox's seed balances."""
        for conn_id in conn_ids:
            kind, account = self.world.account_of(conn_id)
            provider = "click2mail" if kind == "c2m" else "pitney_bowes"
            key = f"postage_ledger.{provider}.{account}@127.0.0.1:{self.ops.SANDBOX_PORT}"
            assert self.api.delete(f"/api/v2/variables/{key}").status_code in (204, 404)

    def charges(self, since: dict[str, Any]) -> dict[str, list[str]]:
        """Amounts charged per account (Click2Mail username or PB merchant) since the ``since`` counters."""
        now = self.counters()
        found: dict[str, list[str]] = {}
        for purchase in now["purchases"][len(since["purchases"]) :]:
            found.setdefault(purchase["username"], []).append(purchase["amount"])
        for refill in now["refills"][len(since["refills"]) :]:
            found.setdefault(refill["prn"], []).append(refill["amount"])
        return found

    # --- Airflow ---
    def set_paused(self, dag_id: str, paused: bool) -> None:
        reply = self.api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        assert reply.status_code == 200, reply.text

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.set_paused(dag_id, False)
        reply = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        assert reply.status_code == 200, reply.text
        return str(reply.json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"])

    def wait_runs(self, dag_id: str, timeout: float, run_ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Wait until the runs (every run of the DAG by default) are done; returns them."""

        def done() -> list[dict[str, Any]] | None:
            runs = [r for r in self.runs(dag_id) if run_ids is None or r["dag_run_id"] in run_ids]
            finished = runs and all(r["state"] in ("success", "failed") for r in runs)
            return runs if finished else None

        return list(wait_until(done, timeout, f"the runs of {dag_id}", interval=1))

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        reply = self.api.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index, "deserialize": True},
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["value"]

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> Path:
        return self.ops.HOME / "logs" / "tasks" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"

    # --- processes ---
    def restart(self, name: str) -> None:
        """Start a killed process again, as ``scripts/cluster up`` would, and wait until it works."""
        self.ops.start(name)
        if name.startswith("worker-"):
            wait_until(lambda: self.ops.worker_ready(name), 120, f"{name} to be ready")
        else:
            host = self.ops.airflow_hostname(name)
            wait_until(lambda: host in self.ops.alive_jobs(self.api), 120, f"{name} to heartbeat")

    # --- asset watchers (Airflow 3.3) ---
    def watcher(self, asset_name: str) -> tuple[int, int | None] | None:
        """The trigger watching an asset: its id and the TriggererJob id running it (None: unassigned)."""
        rows = self.sql(
            "SELECT t.id, t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id "
            "JOIN asset a ON a.id = w.asset_id WHERE a.name = %s",
            asset_name,
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def asset_state(self, asset_name: str, key: str) -> Any:
        """A value of the asset's ``asset_state_store`` (JSON-decoded); None when it has none."""
        import json

        rows = self.sql(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id "
            "WHERE a.name = %s AND s.key = %s",
            asset_name,
            key,
        )
        return json.loads(rows[0][0]) if rows else None

    def asset_events(self, asset_name: str) -> int:
        rows = self.sql(
            "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s", asset_name
        )
        return int(rows[0][0])

    def triggerer_name(self, job_id: int) -> str:
        """The cluster process (``triggerer-1``, ``triggerer-2``) of a TriggererJob."""
        rows = self.sql("SELECT hostname FROM job WHERE id = %s AND job_type = 'TriggererJob'", job_id)
        assert rows, f"no TriggererJob {job_id}"
        return str(rows[0][0]).split(".", 1)[0]

    def heartbeating(self, name: str) -> bool:
        """A scheduler, DAG processor or triggerer of the cluster has a live job."""
        return self.ops.airflow_hostname(name) in self.ops.alive_jobs(self.api)
