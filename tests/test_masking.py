"""A connection's secrets go to Airflow's masker when the provider reads it, sync and async, without
the provider's own reads adding Airflow's "too short to mask" notice, and a broken extra is a clear error."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from airflow.providers.common.compat.sdk import redact
from conftest import AIRFLOW_V3, PB_CONN_ID, c2m_connection, conn_uri_env

from airflow_provider_postage._masking import mask_all, parse_extra, secrets_to_mask
from airflow_provider_postage.hooks.postage import aget_postage_hook, get_postage_hook
from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.sandbox.state import SandboxState

CARD = "4000000000000002"  # not the sandbox's usual test card: masked only if this read registers it
API_KEY = "user-api-key-7f3e"  # an extra of the user's own, under a name Airflow deems sensitive


def _masked(secret: str) -> bool:
    return secret not in str(redact(f"value={secret}"))


def _short_value_notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "too short" in r.getMessage()]


@pytest.fixture
def notice_armed() -> None:
    """Airflow 3 warns about a short value once per process: re-arm it so a read here would show."""
    if AIRFLOW_V3:
        from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

        SecretsMasker._has_warned_short_secret = False


def test_card_and_sensitive_extras_masked_short_values_left_out() -> None:
    extra = {"card_number_secret": CARD, "card_cvv_secret": "123", "billing_state": "MO", "my_api_key": API_KEY}
    pairs = secrets_to_mask("a-password", extra, ["card_number_secret", "card_cvv_secret"])
    assert ("a-password", None) in pairs and (CARD, None) in pairs and (API_KEY, "my_api_key") in pairs
    if AIRFLOW_V3:  # values under [logging] min_length_masked_secret cannot be masked: left out quietly
        assert all(len(value) >= 5 for value, _ in pairs)
    else:  # Airflow 2.11 masks values of any length
        assert ("123", None) in pairs


def _spy(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[str]:
    """What the provider itself hands the masker (Airflow's own lookup masks too, so ``redact`` alone
    would not show a provider that stopped masking)."""
    seen: list[str] = []
    real = getattr(module, name)

    def spy(pairs: list[tuple[str, str | None]]) -> object:
        pairs = list(pairs)
        seen.extend(value for value, _ in pairs)
        return real(pairs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_a_sync_read_masks_the_card(connections: SandboxState, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_postage.hooks import base

    seen = _spy(monkeypatch, base, "mask_all")
    fields = c2m_connection("https://127.0.0.1:1", card_number_secret=CARD, my_api_key=API_KEY)
    monkeypatch.setenv(*conn_uri_env("c2m_masking", **fields))
    get_postage_hook("c2m_masking").validate_purchase(None)  # reads the connection, sends nothing
    assert CARD in seen and API_KEY in seen
    assert _masked(CARD) and _masked(API_KEY)


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2.11 masks short values and has no such notice")
def test_the_short_value_notice_is_airflows_not_the_providers(
    caplog: pytest.LogCaptureFixture, notice_armed: None
) -> None:
    from airflow.sdk import Connection
    from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

    extra = c2m_connection("https://127.0.0.1:1")["extra"]
    assert isinstance(extra, dict)
    with caplog.at_level(logging.WARNING):
        mask_all(secrets_to_mask("a-password", extra, ["card_number_secret", "card_cvv_secret"]))
    assert _short_value_notices(caplog) == []
    # Airflow's own extra_dejson (which its connection lookup calls, through get_uri) gives the notice.
    with caplog.at_level(logging.WARNING):
        Connection(conn_id="x", conn_type="click2mail", extra=json.dumps(extra)).extra_dejson  # noqa: B018
    assert len(_short_value_notices(caplog)) == 1 and SecretsMasker._has_warned_short_secret


def test_an_async_read_masks_the_card(connections: SandboxState, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_postage.hooks import postage

    seen = _spy(monkeypatch, postage, "amask_all")
    card = "4000000000000010"
    monkeypatch.setenv(*conn_uri_env("c2m_amasking", **c2m_connection("https://127.0.0.1:1", card_number_secret=card)))
    asyncio.run(aget_postage_hook("c2m_amasking"))
    assert card in seen and _masked(card)


@pytest.mark.parametrize(("raw", "why"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_a_broken_extra_is_a_clear_error(raw: str, why: str) -> None:
    with pytest.raises(PostageConfigError, match=why):
        parse_extra(raw)


def test_the_async_token_is_masked_without_the_blocking_call(
    connections: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the triggerer's loop the bearer token goes to the masker through ``amask_secret``: the
    synchronous ``mask_secret`` would need the supervisor's lock the loop may already hold."""
    from airflow_provider_postage import _drivers
    from airflow_provider_postage._tokens import TOKENS

    seen = _spy(monkeypatch, _drivers, "amask_all")
    monkeypatch.setattr(_drivers, "mask_secret", lambda *a, **k: pytest.fail("blocking mask_secret on the loop"))
    TOKENS.clear()

    async def read() -> None:
        hook = await aget_postage_hook(PB_CONN_ID)
        await hook.aget_balances()

    asyncio.run(read())
    assert len(seen) == 1 and _masked(seen[0])


def test_a_loop_leaves_no_client_behind() -> None:
    from airflow_provider_postage import _drivers

    async def use() -> None:
        _drivers.shared_client(True)

    for _ in range(3):
        asyncio.run(use())
    assert all(not clients for clients in _drivers._clients.values())


def test_a_secret_extra_given_as_a_list_is_masked_item_by_item() -> None:
    pairs = secrets_to_mask(None, {"card_number_secret": [CARD, "x"]}, ["card_number_secret"])
    # Airflow 2.11 masks values of any length; Airflow 3 leaves out what is too short to mask
    assert pairs == ([(CARD, None)] if AIRFLOW_V3 else [(CARD, None), ("x", None)])
