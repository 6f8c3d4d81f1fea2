"""``postage-sandbox``: serve the Click2Mail / Pitney Bowes emulator until SIGINT or SIGTERM.

Usage::

    postage-sandbox [--host 127.0.0.1] [--port 8787] [--seed FILE] [--token-ttl SECONDS]
                    [--settle-seconds SECONDS] [--tls [--ca-dir DIR]] [--no-compress] [--no-chunked]
    python -m airflow_provider_postage.sandbox --port 0

Prints exactly one line once it accepts connections, then serves::

    postage-sandbox listening on http://127.0.0.1:8787

``--port 0`` picks a free port (read it from that line).

With ``--tls`` it serves HTTPS with a certificate (for 127.0.0.1, localhost and ::1) from a local CA
made for this run, and prints a second line with the path of the CA certificate (PEM) to trust::

    postage-sandbox listening on https://127.0.0.1:8787
    postage-sandbox CA certificate: /tmp/postage-sandbox-tls-…/ca.pem

``--ca-dir DIR`` also writes it to ``DIR/ca.pem`` (and that is the path printed), so that other
processes can trust it after this one is gone; the temporary copy is removed at exit.

Wire behaviour, as a real server behind TLS terminators, gateways and CDNs: reply bodies are
gzip/deflate-compressed when the request's ``Accept-Encoding`` allows (``--no-compress``: never) and
sent with ``Transfer-Encoding: chunked`` in several pieces (``--no-chunked``: with Content-Length).
Both are settings (``compress``, ``chunked``) that ``POST /_sandbox/settings`` changes at run time and
``POST /_sandbox/reset`` restores to the command line's choice. Wire faults (``"wire"``:
``tls_alert``, ``corrupt_record``, ``reset``, ``cut_body``, ``oversize``, ``trickle`` with
``"trickle_interval"``) are injected with ``POST /_sandbox/faults`` (see :class:`.faults.Fault`).

Pitney Bowes auto refill and transaction history (details in :mod:`.pitney_bowes.routes`):

* ``GET|POST /shippingservices/v1/developers/{developerId}/merchants/{prn}/autorefillrule`` with
  ``{"merchantID", "threshold", "addAmount", "enabled"}`` (a field left out is null, which disables
  the rule). An enabled rule is applied whenever the balance is read: below ``threshold``, the sandbox
  refills ``addAmount`` (a refill with source ``auto_refill``). ``POST /_sandbox/pb/merchants/{prn}/autorefill``
  sets it without a token.
* ``GET /shippingservices/v4/ledger/developers/{developerId}/transactions/reports?fromDate=…&toDate=…``
  (``transactionType``, ``merchantId``, ``page``, ``size`` optional): every refill is a ``POSTAGE FUND``
  entry; ``fromDate`` may go back 6 months. ``POST /_sandbox/pb/merchants/{prn}/transactions`` with
  ``{"transactions": [{"amount", "at", "type"}]}`` seeds older entries.

Fault and counter endpoint names: ``c2m_credit``, ``c2m_purchase``, ``pb_token``, ``pb_balance``,
``pb_fund``, ``pb_autorefill_get``, ``pb_autorefill_set``, ``pb_transactions``.

Seed file (``--seed``): a JSON object, every key optional; amounts may be strings or JSON numbers
and are read as Decimal::

    {
      "include_defaults": false,
      "token_ttl": 35999,
      "c2m_purchase_reply": "full",            // "full" | "description" | "declaration_only"
      "pb_duplicate_transaction": "replay",    // "replay" | "reject" | "apply"
      "compress": true,                        // gzip/deflate replies when Accept-Encoding allows
      "chunked": true,                         // Transfer-Encoding: chunked replies
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
``token_ttl``. Without ``--seed`` the default seed is used (see :data:`.seed.DEFAULT_SEED`).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .server import SandboxServer
from .state import DEFAULT_SEED, InvalidSettingError, SandboxState, Seed
from .tls import write_ca

__all__ = ["build_parser", "main"]

_EPILOG = """\
wire:
  Replies are gzip/deflate-compressed when the request's Accept-Encoding allows
  and sent chunked in several pieces, as behind a real CDN or proxy; settings
  'compress' and 'chunked' (POST /_sandbox/settings) change that at run time.
  Wire faults (POST /_sandbox/faults with "wire": tls_alert | corrupt_record |
  reset | cut_body | oversize | trickle, "trickle_interval": seconds, "apply":
  true to process the call first) break replies on the wire: a TLS alert or
  corrupt TLS record written under the TLS layer, a TCP reset, a body cut short,
  a body over 1 MiB, a body sent one byte at a time.

Pitney Bowes auto refill (Bearer token of the merchant's developer):
  GET|POST /shippingservices/v1/developers/{developerId}/merchants/{prn}/autorefillrule
    {"merchantID": prn, "threshold": number|null, "addAmount": integer|null, "enabled": bool}
  A field left out is null, which disables the rule. An enabled rule refills
  addAmount (source "auto_refill") whenever a balance read finds the balance
  below threshold. Without a token: POST /_sandbox/pb/merchants/{prn}/autorefill.

Pitney Bowes transaction history:
  GET /shippingservices/v4/ledger/developers/{developerId}/transactions/reports
    ?fromDate=2026-11-01T00:00:00Z&toDate=...[&transactionType=POSTAGE FUND]
    [&merchantId=prn][&page=0][&size=20 (max 2000)]
  Every refill, manual or automatic, is a POSTAGE FUND entry; fromDate may go
  back 6 months at most. Seed older entries with
  POST /_sandbox/pb/merchants/{prn}/transactions {"transactions": [{"amount", "at", "type"}]}.

fault and counter endpoints:
  c2m_credit, c2m_purchase, pb_token, pb_balance, pb_fund,
  pb_autorefill_get, pb_autorefill_set, pb_transactions
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postage-sandbox",
        description="Local, stateful emulator of the Click2Mail and Pitney Bowes APIs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
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
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a certificate from a local CA made for this run; prints the CA's PEM path",
    )
    parser.add_argument(
        "--ca-dir",
        metavar="DIR",
        help="with --tls: also write the CA certificate to DIR/ca.pem (the path then printed)",
    )
    parser.add_argument(
        "--no-compress",
        action="store_true",
        help="never compress replies (setting compress=false; default: gzip/deflate per Accept-Encoding)",
    )
    parser.add_argument(
        "--no-chunked",
        action="store_true",
        help="send replies with Content-Length (setting chunked=false; default: Transfer-Encoding: chunked)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ca_dir and not args.tls:
        parser.error("--ca-dir needs --tls")
    try:
        seed = Seed.from_file(args.seed) if args.seed else DEFAULT_SEED
        if args.no_compress or args.no_chunked:
            seed = dataclasses.replace(
                seed,
                compress=seed.compress and not args.no_compress,
                chunked=seed.chunked and not args.no_chunked,
            )
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

    server = SandboxServer(state, host=args.host, port=args.port, log_level=args.log_level, tls=args.tls)
    try:
        server.start()
    except OSError as exc:
        print(f"postage-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. --tls without trustme
        print(f"postage-sandbox: {exc}", file=sys.stderr)
        return 1
    ca_path = server.ca_path
    if ca_path is not None and args.ca_dir:
        try:
            ca_path = str(write_ca(Path(args.ca_dir)))
        except OSError as exc:
            server.stop()
            print(f"postage-sandbox: cannot write the CA certificate to {args.ca_dir}: {exc}", file=sys.stderr)
            return 1
    print(f"postage-sandbox listening on {server.url}", flush=True)
    if ca_path is not None:
        print(f"postage-sandbox CA certificate: {ca_path}", flush=True)
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
