"""The main job, offline: the scheduled top-up pipeline (``example_dags/postage_scheduled_top_up.py``)
run end to end on an embedded SQLite Airflow against the local sandbox, with a before/after table.

The sandbox starts with one low Click2Mail account and one low Pitney Bowes merchant that has a line of
credit; bought funds take a few seconds to show (as on the real services), so the pipeline's sensor
really defers and is resumed when they do.

    scripts/demo               run the pipeline once and print what it did (exit 0 on success)
    scripts/demo --standalone  the same set-up as a running Airflow (UI, scheduler, triggerer) to explore

Run it through ``scripts/demo``, which sets up the virtualenv first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_postage.sandbox.state import DEMO_BILLING

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("POSTAGE_DEMO_DIR") or ROOT / ".demo")
DAG_ID = "postage_scheduled_top_up"
SETTLE_SECONDS = 3

os.environ["AIRFLOW_HOME"] = str(WORK / "airflow-home")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


def install_cluster_policies() -> None:
    """Polls every second, not every minute (scripts/airflow_local_settings.py), before Airflow loads."""
    config = WORK / "airflow-home" / "config"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scripts" / "airflow_local_settings.py", config / "airflow_local_settings.py")


class _ShortValueNotice(logging.Filter):
    """Airflow 3 notes once per process, when it reads a connection whose extra holds a value shorter than
    ``[logging] min_length_masked_secret`` (the card's CVV, expiry month, state), that it skips masking
    it: Airflow's own notice about values too short to mask, not a fault (README, "Connections"). The
    demo leaves it out of its output so that what is shown is the provider's doing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Skipping masking for a secret as it's too short")


for _name in ("airflow.sdk._shared.secrets_masker.secrets_masker", "airflow._shared.secrets_masker.secrets_masker"):
    logging.getLogger(_name).addFilter(_ShortValueNotice())


def connections(sandbox_url: str, ca_path: str | None) -> dict[str, dict[str, object]]:
    """The two connections, trusting the sandbox's own CA: the sandbox speaks HTTPS like the real APIs."""
    from airflow_provider_postage.sandbox import state

    tls = {"ca_bundle": ca_path} if ca_path else {}
    return {
        "postage_click2mail": {
            "conn_type": "click2mail",
            "login": state.DEFAULT_C2M_USERNAME,
            "password": state.DEFAULT_C2M_PASSWORD,
            "host": sandbox_url,
            "extra": {"environment": "staging", **DEMO_BILLING, **tls},
        },
        "postage_pitney_bowes": {
            "conn_type": "pitney_bowes",
            "login": state.DEFAULT_PB_API_KEY,
            "password": state.DEFAULT_PB_API_SECRET,
            "host": sandbox_url,
            "extra": {
                "developer_id": state.DEFAULT_PB_DEVELOPER_ID,
                "postal_reporting_number": state.DEFAULT_PB_PRN,
                **tls,
            },
        },
    }


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate() -> None:
    subprocess.run([airflow_bin(), "db", "migrate"], check=True, capture_output=True, text=True)


def run_pipeline() -> int:
    """In a child process: parse the example DAGs and run one DAG run with ``dag.test()``."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print(json.dumps(bag.import_errors, indent=2), file=sys.stderr)
        return 2
    run = bag.get_dag(DAG_ID).test()
    states = {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in run.get_task_instances()
    }
    print("PIPELINE_RESULT " + json.dumps({"state": str(run.state), "tasks": states}))
    return 0 if str(run.state).endswith("success") else 1


def balances_table(conn_ids: list[str]) -> str:
    from airflow_provider_postage.hooks.postage import get_postage_hook
    from airflow_provider_postage.operators.postage import balance_table

    return balance_table([b for conn_id in conn_ids for b in get_postage_hook(conn_id).get_balances()])


def demo() -> int:
    from airflow_provider_postage.sandbox import SandboxServer

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    install_cluster_policies()
    started = time.monotonic()
    with SandboxServer(tls=True) as sandbox:
        sandbox.state.settle_seconds = SETTLE_SECONDS
        for conn_id, fields in connections(sandbox.url, sandbox.ca_path).items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
        conn_ids = list(connections(sandbox.url, sandbox.ca_path))
        print(f"Sandbox (Click2Mail + Pitney Bowes) at {sandbox.url}; bought funds show after {SETTLE_SECONDS} s\n")
        print("Balances before:")
        print(balances_table(conn_ids) + "\n")

        print(f"Running {DAG_ID} on an embedded SQLite Airflow (log: {WORK / 'pipeline.log'}) ...")
        migrate()
        with open(WORK / "pipeline.log", "w") as log:
            child = subprocess.run(
                [sys.executable, __file__, "--pipeline"], stdout=log, stderr=subprocess.STDOUT, check=False
            )
        result_line = next(
            (line for line in (WORK / "pipeline.log").read_text().splitlines() if line.startswith("PIPELINE_RESULT ")),
            None,
        )
        result = json.loads(result_line.removeprefix("PIPELINE_RESULT ")) if result_line else {"state": "crashed"}
        log_text = (WORK / "pipeline.log").read_text()
        deferred = "Pausing task as DEFERRED" in log_text
        print(
            f"DAG run: {result['state']}; tasks: "
            + ", ".join(f"{k}={v.split('.')[-1]}" for k, v in sorted(result.get("tasks", {}).items()))
        )
        print(f"The wait for funds {'deferred to the trigger and resumed' if deferred else 'did not defer'}.\n")

        counters = sandbox.state.counters()
        print("Purchases the sandbox applied:")
        for purchase in counters["purchases"]:
            print(
                f"  Click2Mail   {purchase['username']:<12} {purchase['amount']:>8} USD"
                f"  card ****{purchase['card_last4']}"
            )
        for refill in counters["refills"]:
            print(
                f"  Pitney Bowes {refill['prn']:<12} {refill['amount']:>8} USD"
                f"  from {refill['source']}, id {refill['transaction_id']}"
            )
        print("\nBalances after:")
        print(balances_table(conn_ids))
        print(f"\nDone in {time.monotonic() - started:.0f} s.")
    return 0 if child.returncode == 0 and result["state"].endswith("success") else 1


def standalone() -> int:
    """The same world as a running Airflow: sandbox, connections in the metadata DB, example DAGs."""
    from airflow_provider_postage.sandbox import SandboxServer

    WORK.mkdir(parents=True, exist_ok=True)
    install_cluster_policies()
    port = int(os.environ.get("POSTAGE_DEMO_PORT", "8080"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # The UI's Test button (off by default since Airflow 2.7) runs the hook's test_connection.
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # Not 32 LocalExecutor workers on a small machine: two per core is plenty for the examples.
        "AIRFLOW__CORE__PARALLELISM": str(max(4, 2 * (os.cpu_count() or 2))),
    }
    with SandboxServer(port=int(os.environ.get("POSTAGE_SANDBOX_PORT", "8787")), tls=True) as sandbox:
        sandbox.state.settle_seconds = SETTLE_SECONDS
        migrate()
        conns = connections(sandbox.url, sandbox.ca_path)
        for conn_id in conns:
            subprocess.run([airflow_bin(), "connections", "delete", conn_id], capture_output=True, env=env, check=False)
        # From a file, not `connections add --conn-json`: Airflow's CLI audit log would keep the card in clear.
        conn_file = WORK / "connections.json"
        conn_file.write_text(json.dumps(conns))
        conn_file.chmod(0o600)
        try:
            subprocess.run(
                [airflow_bin(), "connections", "import", str(conn_file)], check=True, capture_output=True, env=env
            )
        finally:
            conn_file.unlink()
        print(f"Sandbox at {sandbox.url}; Airflow UI at http://localhost:{port} (Ctrl-C stops both)", flush=True)
        try:
            return subprocess.run([airflow_bin(), "standalone"], env=env, check=False).returncode
        except KeyboardInterrupt:
            return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--standalone", action="store_true", help="start a running Airflow with the sandbox")
    parser.add_argument("--pipeline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:
        return run_pipeline()
    if args.standalone:
        return standalone()
    return demo()


if __name__ == "__main__":
    sys.exit(main())
