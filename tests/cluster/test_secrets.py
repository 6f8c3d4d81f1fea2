"""Runs last: after every DAG, kill and retry above, the connections' secrets (card number, CVV,
passwords, the API secret) and the sandbox's bearer tokens appear nowhere the cluster keeps data: not in
the PostgreSQL database (every table, dumped as text), not in Redis (every key of every database), not
in any process's log nor any task, trigger or DAG-processor log."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from cluster.helpers import MEASURED, Cluster

#: A whole DAG run on the cluster takes minutes, more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(900)


def test_no_secret_in_the_database_redis_or_any_log(cluster: Cluster) -> None:
    world, ops = cluster.world, cluster.ops
    secrets = [s.encode() for s in world.secrets()]
    patterns: dict[str, re.Pattern[bytes]] = {
        "a sandbox bearer token": world.SANDBOX_TOKEN,
        "the CVV": world.CVV_NEAR_NAME,
    }
    leaks: list[str] = []

    def _leaks(data: bytes, where: str) -> list[str]:
        found = [f"{secret.decode()[:6]}… in {where}" for secret in secrets if secret in data]
        return found + [f"{name} in {where}" for name, pattern in patterns.items() if pattern.search(data)]

    env = {**os.environ, "PGPASSWORD": ops.load_state()["db_password"]}
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-p", str(ops.PG_PORT), "-U", "airflow", "airflow"],
        env=env,
        capture_output=True,
        timeout=300,
        check=True,
    ).stdout
    assert b"COPY public.connection " in dump and b"acct_c2m_49" in dump  # the connections are in there
    tables = dump.count(b"\nCOPY public.")
    leaks += _leaks(dump, "the PostgreSQL dump")

    import redis

    keys = 0
    for db in range(16):
        client = redis.Redis(host="127.0.0.1", port=ops.REDIS_PORT, db=db)
        for key in client.scan_iter(count=1000):
            keys += 1
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key) or b""]
            elif kind == "list":
                values = list(client.lrange(key, 0, -1))
            elif kind == "hash":
                values = [k + b"=" + v for k, v in client.hgetall(key).items()]
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                values = [client.dump(key) or b""]
            leaks += _leaks(key + b"\n" + b"\n".join(values), f"Redis db {db} key {key!r}")

    logs = [path for path in (ops.HOME / "logs").rglob("*") if path.is_file()]
    found = ops.pg_cluster()
    if found and found["log"]:
        logs.append(Path(found["log"]))
    assert any(".log.trigger." in path.name for path in logs) and any(p.name == "worker-1.log" for p in logs)
    size = 0
    for path in logs:
        data = path.read_bytes()
        size += len(data)
        leaks += _leaks(data, str(path))

    MEASURED["secrets scan"] = (
        f"{len(secrets)} secrets + CVV + sandbox tokens: {len(leaks)} found in the PostgreSQL dump "
        f"({len(dump):,} bytes, {tables} tables), {keys} Redis keys and {len(logs)} log files ({size:,} bytes)"
    )
    assert not leaks, leaks
