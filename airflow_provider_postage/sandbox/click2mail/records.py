"""Immutable records of the Click2Mail half of the sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..values import money_str

__all__ = ["Purchase"]


@dataclass(frozen=True)
class Purchase:
    """An applied Click2Mail credit purchase."""

    username: str
    amount: Decimal
    environment: str
    card_last4: str
    at: str  # ISO-8601 UTC

    def to_mapping(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "amount": money_str(self.amount),
            "environment": self.environment,
            "card_last4": self.card_last4,
            "at": self.at,
        }
