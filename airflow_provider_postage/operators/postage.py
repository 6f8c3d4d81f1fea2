"""Operators that read balances and buy credit on any postage connection (Click2Mail, Pitney Bowes, or
a registered service)."""

from __future__ import annotations

from airflow_provider_postage.operators.autorefill import PitneyBowesAutoRefillRuleOperator
from airflow_provider_postage.operators.fetch import FetchBalancesOperator, balance_table
from airflow_provider_postage.operators.purchase import (
    ALREADY_APPLIED,
    DEFAULT_MAX_AMOUNT,
    DRY_RUN,
    PURCHASED,
    SKIPPED,
    PurchaseCreditOperator,
)

__all__ = [
    "ALREADY_APPLIED",
    "DEFAULT_MAX_AMOUNT",
    "DRY_RUN",
    "PURCHASED",
    "SKIPPED",
    "FetchBalancesOperator",
    "PitneyBowesAutoRefillRuleOperator",
    "PurchaseCreditOperator",
    "balance_table",
]
