"""Pitney Bowes protocol functions, with no server: the seed's samples verbatim and every error shape."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageResponseError,
    PostageValidationError,
)
from airflow_provider_postage.protocol.http import HttpResponse

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)

# Verbatim from the "Get Account Balances" seed.
POSTAGE_ONLY = b"""{
    "accounts": [ {
        "accountType": "Postage Account",
        "accountNumber": "****6051",
        "currencyCode": "USD",
        "availableBalance": 457.22
    } ]
}"""
WITH_LINE_OF_CREDIT = b"""{
    "accounts": [ {
        "accountType": "Postage Account",
        "accountNumber": "****6062",
        "currencyCode": "USD",
        "availableBalance": 71.89
    },{
        "accountType": "PB Line of Credit",
        "accountNumber": "************8952",
        "currencyCode": "USD",
        "balanceOwed": 0,
        "availableCredit": 500,
        "creditLimit": 5000,
        "minimumAmountDue": 45,
        "minimumDueDate": "2020-12-01"
    } ]
}"""
# A recorded sandbox token reply (../shared/api/pitney_bowes.md), values shortened.
TOKEN_REPLY = (
    b'{"access_token":"abc123","tokenType":"BearerToken","issuedAt":"1506115723099",'
    b'"expiresIn":"35999","clientID":"key","org":"pitneybowes"}'
)


def reply(status: int, body: bytes | str, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body.encode() if isinstance(body, str) else body)


def settings(**extra: object) -> pb.PitneyBowesSettings:
    return pb.settings_from_connection(
        "key", "secret", None, {"developer_id": "44440000", "postal_reporting_number": "900001", **extra}
    )


def test_seed_sample_postage_only() -> None:
    [balance] = pb.parse_balance_response(reply(200, POSTAGE_ONLY), conn_id="pb", received_at=NOW)
    assert (balance.account_type, balance.account_number, balance.currency) == ("postage", "****6051", "USD")
    assert balance.available == Decimal("457.22") and isinstance(balance.available, Decimal)
    assert balance.to_dict()["available"] == "457.22"


def test_seed_sample_with_line_of_credit_keeps_every_field() -> None:
    postage, credit = pb.parse_balance_response(reply(200, WITH_LINE_OF_CREDIT), conn_id="pb", received_at=NOW)
    assert postage.available == Decimal("71.89")
    assert credit.to_dict() == {
        "provider": "pitney_bowes",
        "conn_id": "pb",
        "account_type": "line_of_credit",
        "account_number": "************8952",
        "currency": "USD",
        "available": "500.00",
        "as_of": "2026-11-29T12:00:00+00:00",
        "balance_owed": "0.00",
        "credit_limit": "5000.00",
        "minimum_amount_due": "45.00",
        "minimum_due_date": "2020-12-01",
    }


def test_amounts_as_strings_are_accepted_and_unknown_accounts_skipped() -> None:
    body = {
        "accounts": [
            {
                "accountType": "Postage Account",
                "accountNumber": "1",
                "currencyCode": "USD",
                "availableBalance": "10.10",
            },
            {"accountType": "Rewards", "accountNumber": "2"},
        ]
    }
    [balance] = pb.parse_balance_response(reply(200, json.dumps(body)), conn_id="pb", received_at=NOW)
    assert balance.available == Decimal("10.10")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "<html><body>502 Bad Gateway</body></html>",
        "{not json",
        '{"accounts": "none"}',
        '{"accounts": []}',
        '{"accounts": [{"accountType": "Postage Account", "availableBalance": "abc"}]}',
        '{"accounts": [{"accountType": "Postage Account", "availableBalance": true}]}',
        "[1, 2]",
    ],
)
def test_unreadable_balance_replies_are_typed_errors(body: str) -> None:
    with pytest.raises(PostageResponseError):
        pb.parse_balance_response(reply(200, body), conn_id="pb", received_at=NOW)


@pytest.mark.parametrize(
    ("body", "code", "description"),
    [
        (
            '{"errors":[{"errorCode":"1000033","errorDescription":"Unauthorized API access",'
            '"additionalInfo":null,"parameters":[]}]}',
            "1000033",
            "Unauthorized API access",
        ),
        (
            '[{"errorCode":"1000032","message":"Authentication error","additionalInfo":null}]',
            "1000032",
            "Authentication error",
        ),
        (
            '{"status":"ERROR","errors":[{"errorCode":"1000050","errorDescription":"Invalid JSON"}]}',
            "1000050",
            "Invalid JSON",
        ),
        ('[{"key":"amount","message":"must be an integer"}]', "amount", "must be an integer"),
        (
            '{"errors":[{"errorCode":"A","errorDescription":"first"},{"errorCode":"B","errorDescription":"second"}]}',
            "A, B",
            "first; second",
        ),
    ],
)
def test_every_error_shape(body: str, code: str, description: str) -> None:
    error = pb.error_from_response(reply(400, body))
    assert (error.status, error.code, error.description) == (400, code, description)
    assert type(error) is PostageAPIError


def test_401_and_403_are_auth_errors_and_5xx_transient() -> None:
    assert isinstance(pb.error_from_response(reply(401, '{"errors":[]}')), PostageAuthError)
    assert isinstance(pb.error_from_response(reply(403, "<html>no</html>", "text/html")), PostageAuthError)
    assert pb.error_from_response(reply(503, "<html>maintenance</html>", "text/html")).transient
    assert not pb.error_from_response(reply(404, '{"errors":[]}')).transient


def test_token_reply_and_request() -> None:
    token = pb.parse_token_response(reply(200, TOKEN_REPLY))
    assert (token.access_token, token.expires_in) == ("abc123", 35999)
    assert "abc123" not in repr(token)
    numeric = pb.parse_token_response(reply(200, '{"access_token":"t","expiresIn":3600,"issuedAt":1506115723099}'))
    assert numeric.expires_in == 3600
    request = pb.build_token_request(settings())
    assert request.url == "https://shipping-api-sandbox.pitneybowes.com/oauth/token"
    assert request.body == b"grant_type=client_credentials"
    assert request.headers["Authorization"] == "Basic a2V5OnNlY3JldA=="


@pytest.mark.parametrize(
    "body", ['{"access_token":"t"}', '{"access_token":"t","expiresIn":"soon"}', '{"access_token":"t","expiresIn":-5}']
)
def test_token_without_usable_lifetime_gets_the_short_fallback(body: str) -> None:
    assert pb.parse_token_response(reply(200, body)).expires_in == pb.FALLBACK_TOKEN_LIFETIME


@pytest.mark.parametrize("body", ["{}", '{"access_token": ""}', "<html/>", ""])
def test_token_reply_without_token_is_an_error(body: str) -> None:
    with pytest.raises(PostageResponseError):
        pb.parse_token_response(reply(200, body))


def test_urls_follow_environment_and_host() -> None:
    assert settings(environment="production").merchant_url == (
        "https://shipping-api.pitneybowes.com/shippingservices/v1/developers/44440000/merchants/900001"
    )
    local = pb.settings_from_connection(
        "k", "s", "http://127.0.0.1:8787/shippingservices/", {"developer_id": "d", "postal_reporting_number": "p"}
    )
    assert (local.token_url, local.api_base) == (
        "http://127.0.0.1:8787/oauth/token",
        "http://127.0.0.1:8787/shippingservices",
    )


@pytest.mark.parametrize(
    ("login", "password", "extra", "field"),
    [
        ("", "s", {"developer_id": "d", "postal_reporting_number": "p"}, "login"),
        ("k", None, {"developer_id": "d", "postal_reporting_number": "p"}, "password"),
        ("k", "s", {"postal_reporting_number": "p"}, "developer_id"),
        ("k", "s", {"developer_id": "d"}, "postal_reporting_number"),
        ("k", "s", {"developer_id": "d/../x", "postal_reporting_number": "p"}, "developer_id"),
        ("k", "s", {"developer_id": "d", "postal_reporting_number": "p", "environment": "staging"}, "environment"),
    ],
)
def test_bad_connection_is_refused(login: str, password: str | None, extra: dict, field: str) -> None:
    with pytest.raises(PostageConfigError) as caught:
        pb.settings_from_connection(login, password, None, extra)
    assert caught.value.field == field
    assert str(caught.value) != "s"


def test_refill_request_and_reply() -> None:
    request = pb.build_refill_request(settings(), "tok", Decimal("500"), "txn-1")
    assert request.moves_money and request.headers["X-PB-TransactionId"] == "txn-1"
    assert json.loads(request.body or b"") == {"amount": 500, "currencyCode": "USD"}
    result = pb.parse_refill_response(
        reply(200, '{"amount": 500, "currencyCode": "USD"}'), conn_id="pb", amount=Decimal(500), transaction_id="txn-1"
    )
    assert result.to_dict()["amount"] == "500.00" and result.transaction_id == "txn-1"
    with pytest.raises(PostageAPIError):
        pb.parse_refill_response(
            reply(400, '{"errors":[{"errorCode":"x","errorDescription":"y"}]}'),
            conn_id="pb",
            amount=Decimal(1),
            transaction_id="t",
        )


@pytest.mark.parametrize("amount", ["10.50", "0", "-5", 12.0, "1e400", "ten"])
def test_refill_amount_must_be_whole_positive_dollars(amount: object) -> None:
    with pytest.raises(PostageValidationError):
        pb.validate_refill_amount(amount)


@pytest.mark.parametrize("txn", ["", "a" * 26, "has space", "semi;colon"])
def test_bad_transaction_ids_are_refused(txn: str) -> None:
    with pytest.raises(PostageValidationError):
        pb.validate_transaction_id(txn)


def test_transaction_id_is_stable_and_fits() -> None:
    one = pb.make_transaction_id("dag", "run", "task", -1)
    assert one == pb.make_transaction_id("dag", "run", "task", -1) != pb.make_transaction_id("dag", "run", "task", 0)
    assert pb.validate_transaction_id(one) == one and len(one) <= 25
