from __future__ import annotations

from decimal import Decimal

import pytest

from airflow_provider_postage.protocol.errors import PostageValidationError
from airflow_provider_postage.protocol.money import format_money, parse_amount, parse_threshold, round_up


@pytest.mark.parametrize(
    ("value", "expected"), [("12.3", "12.30"), (7, "7.00"), (Decimal("0.01"), "0.01"), (" 5 ", "5.00")]
)
def test_parse_amount(value: object, expected: str) -> None:
    assert format_money(parse_amount(value)) == expected


@pytest.mark.parametrize("value", [0.1, float("nan"), "inf", "NaN", None, [], "1.234", "-1", "0", True])
def test_parse_amount_refuses(value: object) -> None:
    with pytest.raises(PostageValidationError):
        parse_amount(value)


def test_threshold_allows_zero_not_negative() -> None:
    assert parse_threshold("0") == Decimal("0.00")
    with pytest.raises(PostageValidationError, match="negative"):
        parse_threshold("-0.01")


def test_round_up_and_format_never_rounds_away_precision() -> None:
    assert round_up(Decimal("12.01"), Decimal("1")) == Decimal("13")
    assert round_up(Decimal("12.00"), Decimal("1")) == Decimal("12")
    assert round_up(Decimal("0.001"), Decimal("0.01")) == Decimal("0.01")
    assert format_money(Decimal("0.005")) == "0.005"
