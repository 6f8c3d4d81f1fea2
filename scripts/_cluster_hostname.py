"""``[core] hostname_callable`` of the local cluster: one name per process (``worker-1.<host>``,
``triggerer-2.<host>``, …), so that a task instance's hostname says which worker ran it and
``airflow jobs check --hostname`` checks one triggerer of two on the same machine."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return f"{os.environ.get('POSTAGE_CLUSTER_PROCESS', 'cli')}.{socket.gethostname()}"
