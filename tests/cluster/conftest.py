"""The cluster suite: tests against the running local cluster (``scripts/cluster up``), run by
``scripts/test --cluster`` (which brings the cluster up and down when it is not running).

Without ``POSTAGE_CLUSTER_TESTS=1`` nothing here is collected: ``scripts/test`` runs the rest of the
suite on both Airflow versions without a cluster. The tests talk to the cluster as its users and
operators would: Airflow's REST API, the sandbox's control API, the metadata database (read-only
queries, for what the API does not show: trigger assignment, task instance hostnames), the process
table (to kill a worker or a triggerer) and the logs. Measured numbers are printed at the end of the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.helpers import MEASURED, SCRIPTS, Cluster

if os.environ.get("POSTAGE_CLUSTER_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("cluster measurements")
        for name, value in MEASURED.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    sys.path.insert(0, str(SCRIPTS))
    import _cluster

    down = [name for name in ["postgresql", *_cluster.PROCESSES] if _cluster.pid_of(name) is None]
    if down:
        pytest.fail(
            f"the cluster is not up ({', '.join(down)} not running): scripts/cluster up, or scripts/test --cluster"
        )
    world = Cluster()
    world.sandbox.delete("/_sandbox/faults")
    yield world
    world.sandbox.delete("/_sandbox/faults")
    world.api.close()
    world.sandbox.close()
