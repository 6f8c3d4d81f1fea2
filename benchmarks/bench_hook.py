"""Hook overhead: 1,000 sequential Click2Mail balance reads (one GET, an XML reply) three ways:

* ``ours``: ``get_postage_hook(conn_id).get_balances()`` on one hook instance (its requests.Session
  keeps the connection alive; retries, masking, validation and typed records included);
* ``requests``: ``requests.get(...)`` per read, a new connection each time, then xmltodict + Decimal;
* ``session``: one ``requests.Session`` (``trust_env=False``, as ours) doing the same GET + parse.

The reads are interleaved in blocks of 50 (ours, requests, session, ours, ...) so that drift on a
shared machine hits all three alike. Reported: the median wall time of one read, and the median CPU
time (``time.process_time``) per read over the blocks; the sandbox runs in its own process.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from _common import C2M_PASSWORD, C2M_USER, Load, Sandbox, c2m_conn, emit, median, quiet_logging, set_conn

BLOCK = 50


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()

    with Sandbox() as sandbox:
        set_conn("c2m_bench", **c2m_conn(sandbox.url))
        import requests
        import xmltodict

        from airflow_provider_postage.hooks.postage import get_postage_hook

        quiet_logging()
        url = f"{sandbox.url}/molpro/credit"
        headers = {"Accept": "application/xml"}
        auth = (C2M_USER, C2M_PASSWORD)
        timeout = (10.0, 30.0)

        def parse(body: bytes) -> Decimal:
            return Decimal(xmltodict.parse(body)["credit"]["balance"])

        hook = get_postage_hook("c2m_bench")
        session = requests.Session()
        session.trust_env = False

        def ours() -> Decimal:
            return hook.get_balances()[0].available

        def bare() -> Decimal:
            reply = requests.get(url, headers=headers, auth=auth, timeout=timeout)
            reply.raise_for_status()
            return parse(reply.content)

        def pooled() -> Decimal:
            reply = session.get(url, headers=headers, auth=auth, timeout=timeout)
            reply.raise_for_status()
            return parse(reply.content)

        variants = {"ours": ours, "requests": bare, "session": pooled}
        for fn in variants.values():  # warm-up: connection, lazy imports
            for _ in range(20):
                assert fn() == Decimal("5.00")

        walls: dict[str, list[float]] = {name: [] for name in variants}
        cpus: dict[str, list[float]] = {name: [] for name in variants}
        load = Load(sandbox)
        for _ in range(args.reads // BLOCK):
            for name, fn in variants.items():
                cpu0 = time.process_time()
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    fn()
                    walls[name].append(time.perf_counter() - t0)
                cpus[name].append((time.process_time() - cpu0) / BLOCK)
        sandbox_load = load.done()

    result = {"reads": args.reads, "block": BLOCK, "sandbox": sandbox_load, "variants": {}}
    for name in variants:
        result["variants"][name] = {
            "median_read_s": median(walls[name]),
            "p90_read_s": sorted(walls[name])[int(0.9 * len(walls[name]))],
            "median_cpu_per_read_s": median(cpus[name]),
            "reads": len(walls[name]),
        }
    return result


if __name__ == "__main__":
    emit(main())
