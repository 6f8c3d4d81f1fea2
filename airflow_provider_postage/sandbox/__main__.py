"""``postage-sandbox``: serve the Click2Mail / Pitney Bowes emulator until SIGINT or SIGTERM.

Usage::

    postage-sandbox [--host 127.0.0.1] [--port 8787] [--seed FILE] [--token-ttl SECONDS]
    python -m airflow_provider_postage.sandbox --port 0

Prints exactly one line once it accepts connections, then serves::

    postage-sandbox listening on http://127.0.0.1:8787

``--port 0`` picks a free port (read it from that line).

Seed file (``--seed``): a JSON object, every key optional; amounts may be strings or JSON numbers
and are read as Decimal::

    {
      "include_defaults": false,
      "token_ttl": 35999,
      "c2m_purchase_reply": "full",            // "full" | "description" | "declaration_only"
      "pb_duplicate_transaction": "replay",    // "replay" | "reject" | "apply"
      "c2m_accounts": [
        {"username": "demo-user", "password": "demo-pass-C2M", "balance": "5.00",
         "allow_negative": false, "environment": "staging"}            // or "production"
      ],
      "pb_credentials": [
        {"api_key": "demo-api-key", "api_secret": "demo-api-secret-PB", "developer_id": "44440000"}
      ],
      "pb_merchants": [
        {"prn": "900001", "developer_id": "44440000", "account_number": "****6062",
         "currency_code": "USD", "available_balance": "12.50", "fund_enabled": true,
         "line_of_credit": {"account_number": "************8952", "currency_code": "USD",
                            "balance_owed": "0", "available_credit": "500", "credit_limit": "5000",
                            "minimum_amount_due": "0", "minimum_due_date": "2026-12-31"}},
        {"prn": "900002", "account_number": "****6051", "available_balance": "457.22"}
      ]
    }

(JSON has no comments: they are only here for explanation.) Without ``include_defaults`` the file
is the whole world; with ``"include_defaults": true`` its entries are added to the default seed,
replacing default entries with the same username / api_key / prn. A merchant without
``developer_id`` is visible to every developer id. ``--token-ttl`` overrides the seed's
``token_ttl``. Without ``--seed`` the default seed is used (see :data:`.state.DEFAULT_SEED`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .server import SandboxServer
from .state import InvalidSettingError, SandboxState, Seed

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postage-sandbox",
        description="Local, stateful emulator of the Click2Mail and Pitney Bowes APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to bind, 0 for any free one (default 8787)")
    parser.add_argument("--seed", metavar="FILE", help="JSON seed file (format in the module docstring)")
    parser.add_argument(
        "--token-ttl", type=int, metavar="SECONDS", help="lifetime of Pitney Bowes tokens (default 35999)"
    )
    parser.add_argument(
        "--settle-seconds",
        type=int,
        metavar="SECONDS",
        help="delay before purchased credit and refills show in balances (default 0)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seed = Seed.from_file(args.seed) if args.seed else None
        state = SandboxState(seed)
        if args.token_ttl is not None:
            state.token_ttl = args.token_ttl
        if args.settle_seconds is not None:
            state.settle_seconds = args.settle_seconds
    except (OSError, InvalidSettingError) as exc:
        print(f"postage-sandbox: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    server = SandboxServer(state, host=args.host, port=args.port, log_level=args.log_level)
    try:
        server.start()
    except OSError as exc:
        print(f"postage-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"postage-sandbox listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            if not server.running:
                print("postage-sandbox: server thread ended", file=sys.stderr)
                return 1
    except KeyboardInterrupt:  # only when signal handlers could not be installed
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
