"""Local sandbox: a stateful, offline emulator of the Click2Mail and Pitney Bowes APIs.

It is an independent implementation of both servers (a test oracle): it imports nothing else from
``airflow_provider_postage`` and nothing from Airflow.

Quick start::

    from airflow_provider_postage.sandbox import SandboxServer

    with SandboxServer() as sandbox:          # ephemeral port, default seed
        requests.get(f"{sandbox.url}/molpro/credit", auth=("demo-user", "demo-pass-C2M"))
        sandbox.state.inject_fault("c2m_purchase", status=504, apply=True)

or from a shell: ``postage-sandbox --port 8787`` (see :mod:`.__main__`).

It speaks like a real server behind TLS terminators, gateways and CDNs: ``SandboxServer(tls=True)``
serves HTTPS (trust ``sandbox.ca_path``), replies are compressed and chunked (settings ``compress``
and ``chunked``), and ``Fault(wire=…)`` breaks replies on the wire (see :mod:`.server`, :mod:`.wire`)::

    with SandboxServer(tls=True) as sandbox:
        requests.get(f"{sandbox.url}/molpro/credit", auth=…, verify=sandbox.ca_path)
        sandbox.state.inject_fault("c2m_purchase", wire="tls_alert", apply=True)

Pitney Bowes' auto-refill rule (``GET|POST …/merchants/{prn}/autorefillrule``) and transaction history
(``GET /shippingservices/v4/ledger/developers/{developerId}/transactions/reports``) are emulated too::

    sandbox.state.set_pb_autorefill_rule("900001", threshold="100", add_amount=400, enabled=True)
    sandbox.state.add_pb_transaction("900001", "250", "2026-09-01T12:00:00Z")   # a past refill

Layout: :mod:`.state` (:class:`SandboxState`, assembled from :mod:`.click2mail.state` and
:mod:`.pitney_bowes.state`), :mod:`.seed`, :mod:`.settings`, :mod:`.faults`; the HTTP side in
:mod:`.app` (assembly), :mod:`.click2mail.routes`, :mod:`.pitney_bowes.routes`, :mod:`.control`
(``/_sandbox/*``), :mod:`.replies`, :mod:`.wire`; serving in :mod:`.server` and :mod:`.tls`.
"""

from __future__ import annotations

from .app import create_app
from .server import SandboxServer
from .state import (
    DEFAULT_C2M_ALLOW_NEGATIVE,
    DEFAULT_C2M_BALANCE,
    DEFAULT_C2M_ENVIRONMENT,
    DEFAULT_C2M_PASSWORD,
    DEFAULT_C2M_USERNAME,
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_API_SECRET,
    DEFAULT_PB_BALANCE,
    DEFAULT_PB_BALANCE_2,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_LOC_ACCOUNT_NUMBER,
    DEFAULT_PB_LOC_AVAILABLE_CREDIT,
    DEFAULT_PB_LOC_BALANCE_OWED,
    DEFAULT_PB_LOC_CREDIT_LIMIT,
    DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE,
    DEFAULT_PB_LOC_MINIMUM_DUE_DATE,
    DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER,
    DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2,
    DEFAULT_PB_PRN,
    DEFAULT_PB_PRN_2,
    DEFAULT_SEED,
    DEFAULT_TOKEN_TTL,
    ENDPOINTS,
    POSTAGE_FUND,
    WIRE_FAULTS,
    AutoRefillRule,
    C2MAccountSeed,
    Fault,
    InvalidSettingError,
    LineOfCreditSeed,
    PBCredentialSeed,
    PBMerchantSeed,
    PBTransaction,
    Purchase,
    Refill,
    SandboxError,
    SandboxSettings,
    SandboxState,
    Seed,
    UnknownEntityError,
)

__all__ = [
    "DEFAULT_C2M_ALLOW_NEGATIVE",
    "DEFAULT_C2M_BALANCE",
    "DEFAULT_C2M_ENVIRONMENT",
    "DEFAULT_C2M_PASSWORD",
    "DEFAULT_C2M_USERNAME",
    "DEFAULT_PB_API_KEY",
    "DEFAULT_PB_API_SECRET",
    "DEFAULT_PB_BALANCE",
    "DEFAULT_PB_BALANCE_2",
    "DEFAULT_PB_DEVELOPER_ID",
    "DEFAULT_PB_LOC_ACCOUNT_NUMBER",
    "DEFAULT_PB_LOC_AVAILABLE_CREDIT",
    "DEFAULT_PB_LOC_BALANCE_OWED",
    "DEFAULT_PB_LOC_CREDIT_LIMIT",
    "DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE",
    "DEFAULT_PB_LOC_MINIMUM_DUE_DATE",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2",
    "DEFAULT_PB_PRN",
    "DEFAULT_PB_PRN_2",
    "DEFAULT_SEED",
    "DEFAULT_TOKEN_TTL",
    "ENDPOINTS",
    "POSTAGE_FUND",
    "WIRE_FAULTS",
    "AutoRefillRule",
    "C2MAccountSeed",
    "Fault",
    "InvalidSettingError",
    "LineOfCreditSeed",
    "PBCredentialSeed",
    "PBMerchantSeed",
    "PBTransaction",
    "Purchase",
    "Refill",
    "SandboxError",
    "SandboxServer",
    "SandboxSettings",
    "SandboxState",
    "Seed",
    "UnknownEntityError",
    "create_app",
]
