"""Click2Mail protocol functions, with no server: documented samples, error shapes, validation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from conftest import BILLING

from airflow_provider_postage.protocol import click2mail as c2m
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageResponseError,
    PostageValidationError,
)
from airflow_provider_postage.protocol.http import HttpResponse

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()

# Verbatim from Click2Mail's docs (../shared/api/click2mail.md and the "Add Credit" seed).
DOCUMENTED_BALANCE = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<credit>
    <balance>0.0</balance>
    <allowNegative>false</allowNegative>
</credit>
"""
DOCUMENTED_PURCHASE_REPLY = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


def xml(status: int, body: bytes, content_type: str = "application/xml") -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body)


def settings(environment: str = "staging", **billing: object) -> c2m.Click2MailSettings:
    return c2m.settings_from_connection(
        "awesomeuser", "gReAt/PaSsWoRd123", None, {"environment": environment, **BILLING, **billing}
    )


def test_documented_balance_sample_parses_exactly() -> None:
    balance = c2m.parse_balance_response(xml(200, DOCUMENTED_BALANCE), conn_id="c", received_at=NOW)
    assert balance.available == Decimal("0.0")
    assert balance.allow_negative is False
    assert balance.account_type == "credit"
    assert balance.to_dict() == {
        "provider": "click2mail",
        "conn_id": "c",
        "account_type": "credit",
        "account_number": None,
        "currency": "USD",
        "available": "0.00",
        "as_of": "2026-11-29T12:00:00+00:00",
        "allow_negative": False,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1234.5", "1234.5"), ("-12.75", "-12.75"), ("10", "10"), ("0.005", "0.005")],
)
def test_balance_is_exact_and_signed(text: str, expected: str) -> None:
    body = f"<credit><balance>{text}</balance><allowNegative>true</allowNegative><status>0</status></credit>".encode()
    balance = c2m.parse_balance_response(xml(200, body), conn_id="c", received_at=NOW)
    assert balance.available == Decimal(expected)
    assert str(balance.available) == expected
    assert balance.allow_negative is True


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><body>Oops</body></html>", b"<credit><balance>abc</balance></credit>", b"<credit><bal", b"{}"],
)
def test_unreadable_balance_reply_is_a_typed_error(body: bytes) -> None:
    with pytest.raises(PostageResponseError) as caught:
        c2m.parse_balance_response(xml(200, body), conn_id="c", received_at=NOW)
    assert caught.value.status == 200


def test_status_nine_becomes_api_error_with_code_and_description() -> None:
    body = b"<credit><status>9</status><description>Invalid input data</description></credit>"
    with pytest.raises(PostageAPIError) as caught:
        c2m.parse_balance_response(xml(400, body), conn_id="c", received_at=NOW)
    assert (caught.value.status, caught.value.code, caught.value.description) == (400, "9", "Invalid input data")
    assert not caught.value.transient


def test_401_with_html_body_is_an_auth_error() -> None:
    reply = xml(401, b"<html><body>401 Unauthorized</body></html>", "text/html")
    with pytest.raises(PostageAuthError, match="HTTP 401"):
        c2m.parse_balance_response(reply, conn_id="c", received_at=NOW)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
def test_server_errors_are_transient(status: int) -> None:
    error = c2m.error_from_response(xml(status, b"<html>bad gateway</html>", "text/html"))
    assert error.transient


@pytest.mark.parametrize(
    ("body", "confirmed", "description"),
    [
        (
            b'<?xml version="1.0"?><credit><status>0</status><description>Success</description>'
            b"<balance></balance></credit>",
            True,
            "Success",
        ),
        (b"<credit><description>Success</description></credit>", True, "Success"),
        (DOCUMENTED_PURCHASE_REPLY, False, None),
        (b"", False, None),
        (b"<html>ok</html>", False, None),
    ],
)
def test_purchase_reply_shapes(body: bytes, confirmed: bool, description: str | None) -> None:
    ack = c2m.parse_purchase_response(xml(200, body))
    assert (ack.confirmed, ack.description) == (confirmed, description)


def test_purchase_reply_status_nine_with_200_is_a_refusal() -> None:
    with pytest.raises(PostageAPIError, match="Authorization failed"):
        c2m.parse_purchase_response(
            xml(200, b"<credit><status>9</status><description>Authorization failed</description></credit>")
        )


def test_purchase_request_carries_the_eleven_documented_parameters() -> None:
    s = settings()
    request = c2m.build_purchase_request(s, Decimal("10.00"), c2m.validate_billing(s, today=TODAY))
    assert request.method == "POST" and request.url == "https://stage-rest.click2mail.com/molpro/credit/purchase"
    assert request.moves_money
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"].startswith("Basic ")
    form = {key: values[0] for key, values in parse_qs((request.body or b"").decode()).items()}
    assert form == {
        "billingName": "Awesome User",
        "billingAddress1": "221B Baker St",
        "billingCity": "Springfield",
        "billingState": "MO",
        "billingZip": "34567",
        "billingAmount": "10.00",
        "billingNumber": "4111111111111111",
        "billingMonth": "12",
        "billingYear": "2030",
        "billingCvv": "123",
        "billingCcType": "VI",
    }
    assert "4111" not in repr(request) and "Basic" not in repr(request)


def test_environment_and_host_choose_the_base_url() -> None:
    assert settings("production").base_url == "https://rest.click2mail.com/molpro"
    assert (
        c2m.settings_from_connection("u", "p", "http://127.0.0.1:9000/", {}).base_url == "http://127.0.0.1:9000/molpro"
    )
    assert c2m.settings_from_connection("u", "p", "https://x.test/molpro", {}).base_url == "https://x.test/molpro"
    legacy = c2m.settings_from_connection("u", "p", None, {"extra__click2mail__environment": "production"})
    assert legacy.environment == "production"


@pytest.mark.parametrize(
    ("login", "password", "host", "extra", "field"),
    [
        (None, "p", None, {}, "login"),
        ("u", "", None, {}, "password"),
        ("u", "p", None, {"environment": "qa"}, "environment"),
        ("u", "p", "ftp://example.com", {}, "host"),
        ("u", "p", "http://", {}, "host"),
        ("u", "p", "http://host:notaport", {}, "host"),
    ],
)
def test_bad_connection_is_refused(
    login: str | None, password: str | None, host: str | None, extra: dict, field: str
) -> None:
    with pytest.raises(PostageConfigError) as caught:
        c2m.settings_from_connection(login, password, host, extra)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"card_number_secret": "4111111111111112"}, "card_number_secret"),
        ({"card_number_secret": "41111111"}, "card_number_secret"),
        ({"card_exp_month": "13"}, "card_exp_month"),
        ({"card_exp_month": "00"}, "card_exp_month"),
        ({"card_exp_year": "2020"}, "card_exp_year"),
        ({"card_exp_year": "25"}, "card_exp_year"),
        ({"card_exp_year": "202"}, "card_exp_year"),
        ({"card_cvv_secret": "12"}, "card_cvv_secret"),
        ({"card_type": "AE"}, "card_cvv_secret"),
        ({"card_type": "XX"}, "card_type"),
        ({"billing_zip": "3456"}, "billing_zip"),
        ({"billing_name": ""}, "billing_name"),
        ({"billing_city": None}, "billing_city"),
    ],
)
def test_bad_billing_is_refused_without_echoing_card_data(change: dict, field: str) -> None:
    with pytest.raises(PostageValidationError) as caught:
        c2m.validate_billing(settings(**change), today=TODAY)
    assert caught.value.field == field
    message = str(caught.value)
    assert "4111111111111111" not in message and "4111111111111112" not in message and "123" not in message


def test_expiry_this_month_is_still_valid_and_two_digit_year_is_expanded() -> None:
    profile = c2m.validate_billing(settings(card_exp_month="11", card_exp_year="26"), today=TODAY)
    assert (profile.exp_month, profile.exp_year) == ("11", "2026")


def test_amex_needs_four_digit_cvv() -> None:
    profile = c2m.validate_billing(
        settings(card_type="ae", card_cvv_secret="1234", card_number_secret="378282246310005"), today=TODAY
    )
    assert profile.card_type == "AE"


def test_test_card_refused_in_production() -> None:
    with pytest.raises(PostageConfigError, match="staging test card") as caught:
        c2m.validate_billing(settings("production"), today=TODAY)
    assert caught.value.field == "card_number_secret"
    assert "4111111111111111" not in str(caught.value)


@pytest.mark.parametrize("amount", ["9.99", 9, "0", "-10", "10.001", "abc", "NaN", 10.5, True])
def test_purchase_amount_rules(amount: object) -> None:
    with pytest.raises(PostageValidationError) as caught:
        c2m.validate_purchase_amount(amount)
    assert caught.value.field == "amount"


def test_purchase_amount_accepted_forms() -> None:
    assert c2m.validate_purchase_amount("10") == Decimal("10.00")
    assert c2m.validate_purchase_amount(25) == Decimal("25.00")
    assert c2m.validate_purchase_amount(Decimal("10.50")) == Decimal("10.50")
