"""Pure rules of the emulated APIs, gathered in one place (the historical import path).

The rules now live with their API — :mod:`.click2mail.rules`, :mod:`.pitney_bowes.rules` — and the
float-free JSON helpers in :mod:`.jsonio`; this module re-exports them.
"""

from __future__ import annotations

from .click2mail.rules import (
    C2M_MINIMUM_PURCHASE,
    C2M_PURCHASE_FIELDS,
    C2M_TEST_CARD,
    PurchaseRequest,
    c2m_balance_text,
    luhn_ok,
    validate_c2m_purchase,
)
from .errors import RuleError
from .jsonio import dumps, json_number, loads
from .pitney_bowes.rules import (
    TRANSACTION_ID_RE,
    AutoRefillRequest,
    FundRequest,
    ReportQuery,
    validate_autorefill_body,
    validate_fund_body,
    validate_report_query,
)

__all__ = [
    "C2M_MINIMUM_PURCHASE",
    "C2M_PURCHASE_FIELDS",
    "C2M_TEST_CARD",
    "TRANSACTION_ID_RE",
    "AutoRefillRequest",
    "FundRequest",
    "PurchaseRequest",
    "ReportQuery",
    "RuleError",
    "c2m_balance_text",
    "dumps",
    "json_number",
    "loads",
    "luhn_ok",
    "validate_autorefill_body",
    "validate_c2m_purchase",
    "validate_fund_body",
    "validate_report_query",
]
