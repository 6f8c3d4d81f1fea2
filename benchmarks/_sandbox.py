"""Serve the postage sandbox in its own process for the benchmarks, sized so that it is not the bottleneck.

The application and its state are the package's own (``create_app``, ``SandboxState``); only the
serving differs from ``postage-sandbox``: uvloop and httptools when installed (the package's
``SandboxServer`` uses the pure-Python h11 parser), a listen backlog of 4096 instead of 128 (5,000
triggers that each open a new connection per poll would otherwise overflow it), and optionally
``--merchants N`` extra Pitney Bowes merchants (PRNs 100000 ...) so every trigger can watch its own
account. Prints ``postage-sandbox listening on http://127.0.0.1:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import resource
import signal
import socket
import sys

import uvicorn

from airflow_provider_postage.sandbox import SandboxState
from airflow_provider_postage.sandbox.app import create_app

#: The developer id of the sandbox's default credentials: extra merchants belong to it.
DEVELOPER_ID = "44440000"
FIRST_EXTRA_PRN = 100000


def merchant_prn(index: int) -> str:
    return str(FIRST_EXTRA_PRN + index)


def build_state(merchants: int, token_ttl: int | None) -> SandboxState:
    seed: dict[str, object] = {
        "include_defaults": True,
        "pb_merchants": [
            {
                "prn": merchant_prn(i),
                "developer_id": DEVELOPER_ID,
                "account_number": f"****{i % 10000:04d}",
                "available_balance": "12.50",
            }
            for i in range(merchants)
        ],
    }
    if token_ttl is not None:
        seed["token_ttl"] = token_ttl
    return SandboxState(seed)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--merchants", type=int, default=0)
    parser.add_argument("--token-ttl", type=int, default=None)
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    state = build_state(args.merchants, args.token_ttl)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.setblocking(False)
    port = sock.getsockname()[1]

    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    config = uvicorn.Config(
        create_app(state),
        log_level="error",
        log_config=None,
        lifespan="off",
        http="httptools" if fast else "h11",
        loop="uvloop" if fast else "asyncio",
        ws="none",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    server = uvicorn.Server(config)

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # uvicorn.Server.startup() logs nothing at this level; announce once the socket is served.
    async def serve() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.005)
        print(f"postage-sandbox listening on http://127.0.0.1:{port}", flush=True)
        await task

    if fast:
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
