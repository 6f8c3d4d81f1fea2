"""What the local cluster (``scripts/cluster``) runs against: the sandbox's world and the Airflow
connections that reach it, with the distinctive fake secrets the cluster tests look for afterwards.

* ``postage_click2mail`` / ``postage_pitney_bowes``: the example DAGs' connections (Click2Mail account
  ``demo-user``, Pitney Bowes merchant ``900001`` with its line of credit), as in ``scripts/demo``.
* :data:`ACCOUNTS` (100): ``acct_c2m_00`` … ``acct_c2m_49`` (one Click2Mail account each, its own
  password) and ``acct_pb_00`` … ``acct_pb_49`` (one Pitney Bowes merchant each, ``910000`` … ``910049``,
  under one developer credential): the many-accounts DAG's Variable ``postage_accounts``.

Every value here is fake and made to be found: a secrets scan that finds one of :func:`secrets` (or a
sandbox token, ``sbxtok-…``) in the database, Redis or a log has found a leak.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_postage.sandbox.state import (
    DEFAULT_C2M_USERNAME,
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_PRN,
    DEMO_BILLING,
)

C2M_CONN_ID = "postage_click2mail"
PB_CONN_ID = "postage_pitney_bowes"

#: The company card every Click2Mail connection pays with (Luhn-valid, not the staging test card).
CARD_NUMBER = "4916338506082832"
CVV = "862"
C2M_MAIN_PASSWORD = "Frobozz-C2M-main-pass-2231"
PB_SECRET = "Plugh-PB-cluster-secret-9932"
#: A Pitney Bowes bearer token as the sandbox issues them: none may be stored or logged by Airflow.
SANDBOX_TOKEN = re.compile(rb"sbxtok-[A-Za-z0-9_-]{20,}")
#: The CVV next to its name, as it would appear in a request body or a dumped connection extra.
CVV_NEAR_NAME = re.compile(rb"(?i)cvv[^A-Za-z0-9]{0,12}" + CVV.encode() + rb"(?![0-9])")

C2M_ACCOUNTS = 50
PB_MERCHANTS = 50
START_C2M_BALANCE = "5.00"
START_PB_BALANCE = "12.50"


def c2m_username(i: int) -> str:
    return f"acct-c2m-{i:02d}"


def c2m_password(i: int) -> str:
    return f"Xyzzy-C2M-{i:02d}-pass-4417"


def pb_prn(i: int) -> str:
    return f"9100{i:02d}"


def c2m_conn_id(i: int) -> str:
    return f"acct_c2m_{i:02d}"


def pb_conn_id(i: int) -> str:
    return f"acct_pb_{i:02d}"


#: The 100 accounts of the many-accounts DAG, as connection ids (its Variable ``postage_accounts``).
ACCOUNTS = [c2m_conn_id(i) for i in range(C2M_ACCOUNTS)] + [pb_conn_id(i) for i in range(PB_MERCHANTS)]


def account_of(conn_id: str) -> tuple[str, str]:
    """``("c2m", username)`` or ``("pb", prn)``: where the sandbox keeps the account behind a connection."""
    if conn_id == C2M_CONN_ID:
        return "c2m", DEFAULT_C2M_USERNAME
    if conn_id == PB_CONN_ID:
        return "pb", DEFAULT_PB_PRN
    kind, _, number = conn_id.removeprefix("acct_").partition("_")
    return (kind, c2m_username(int(number))) if kind == "c2m" else (kind, pb_prn(int(number)))


def secrets() -> list[str]:
    """Every secret put in a connection (the CVV is looked for next to its name: 3 digits alone are noise)."""
    return [CARD_NUMBER, C2M_MAIN_PASSWORD, PB_SECRET, *(c2m_password(i) for i in range(C2M_ACCOUNTS))]


def sandbox_seed() -> dict[str, Any]:
    """``postage-sandbox --seed``: the default world (with our secrets) plus the 100 accounts."""
    return {
        "include_defaults": True,
        "c2m_accounts": [
            {"username": DEFAULT_C2M_USERNAME, "password": C2M_MAIN_PASSWORD, "balance": "5.00"},
            *(
                {"username": c2m_username(i), "password": c2m_password(i), "balance": START_C2M_BALANCE}
                for i in range(C2M_ACCOUNTS)
            ),
        ],
        "pb_credentials": [
            {"api_key": DEFAULT_PB_API_KEY, "api_secret": PB_SECRET, "developer_id": DEFAULT_PB_DEVELOPER_ID}
        ],
        "pb_merchants": [
            {
                "prn": pb_prn(i),
                "developer_id": DEFAULT_PB_DEVELOPER_ID,
                "account_number": f"****{7000 + i}",
                "available_balance": START_PB_BALANCE,
            }
            for i in range(PB_MERCHANTS)
        ],
    }


def _c2m(conn_id: str, username: str, password: str, url: str, ca_path: str) -> dict[str, Any]:
    billing = {**DEMO_BILLING, "card_number_secret": CARD_NUMBER, "card_cvv_secret": CVV}
    extra = {"environment": "staging", **billing, "ca_bundle": ca_path}
    return {
        "connection_id": conn_id,
        "conn_type": "click2mail",
        "login": username,
        "password": password,
        "host": url,
        "extra": json.dumps(extra),
    }


def _pb(conn_id: str, prn: str, url: str, ca_path: str) -> dict[str, Any]:
    extra = {"developer_id": DEFAULT_PB_DEVELOPER_ID, "postal_reporting_number": prn, "ca_bundle": ca_path}
    return {
        "connection_id": conn_id,
        "conn_type": "pitney_bowes",
        "login": DEFAULT_PB_API_KEY,
        "password": PB_SECRET,
        "host": url,
        "extra": json.dumps(extra),
    }


def connections(url: str, ca_path: str) -> list[dict[str, Any]]:
    """Every connection, as bodies of Airflow's REST API (``/api/v2/connections``)."""
    return [
        _c2m(C2M_CONN_ID, DEFAULT_C2M_USERNAME, C2M_MAIN_PASSWORD, url, ca_path),
        _pb(PB_CONN_ID, DEFAULT_PB_PRN, url, ca_path),
        *(_c2m(c2m_conn_id(i), c2m_username(i), c2m_password(i), url, ca_path) for i in range(C2M_ACCOUNTS)),
        *(_pb(pb_conn_id(i), pb_prn(i), url, ca_path) for i in range(PB_MERCHANTS)),
    ]
