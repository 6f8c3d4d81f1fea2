"""A connection's extra, read and masked the way Airflow's ``extra_dejson`` would, without its noise.

``extra_dejson`` hands every value of the extra to the masker, and Airflow 3's masker warns ("Skipping
masking for a secret as it's too short") at the first value shorter than ``[logging]
min_length_masked_secret``: a card's CVV, a two-letter state or card type. Such a value cannot be masked
anyway (masking "123" would redact every "123" in every log), so here it is left out quietly; every
longer value goes to the masker with its key, and Airflow decides by the key, as ``extra_dejson`` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import Any

import airflow
from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_postage.protocol.errors import PostageConfigError

_AIRFLOW_3 = int(airflow.__version__.split(".")[0]) >= 3


def parse_extra(raw: str | None) -> dict[str, Any]:
    """The extra as a dict; a broken one is a clear configuration error, not an empty dict."""
    if not raw:
        return {}
    try:
        extra = json.loads(raw)
    except (ValueError, RecursionError):
        raise PostageConfigError("extra", "is not valid JSON") from None
    if not isinstance(extra, dict):
        raise PostageConfigError("extra", "must be a JSON object")
    return extra


def _min_length() -> int:
    if not _AIRFLOW_3:
        return 1  # Airflow 2.11 masks values of any length
    from airflow.configuration import conf

    return conf.getint("logging", "min_length_masked_secret", fallback=5)


def _walk(value: Any, name: str | None, min_length: int) -> Iterator[tuple[str, str | None]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, str(key), min_length)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, name, min_length)
    elif isinstance(value, str) and len(value) >= min_length:
        yield value, name


def secrets_to_mask(
    password: str | None, extra: dict[str, Any], secret_extras: Iterable[str]
) -> list[tuple[str, str | None]]:
    """(value, key) pairs for the masker: the password and the service's secret extras unconditionally
    (key ``None``), every other extra value under its key, so Airflow masks it if the key is sensitive."""
    min_length = _min_length()
    named = set(secret_extras)
    pairs: list[tuple[str, str | None]] = []
    if password and len(password) >= min_length:
        pairs.append((password, None))
    for key, value in extra.items():
        bare = key.rsplit("__", 1)[-1] if key.startswith("extra__") else key
        if bare in named and isinstance(value, (dict, list)):
            pairs.extend((secret, None) for secret, _ in _walk(value, None, min_length))
        elif bare in named and value not in (None, ""):
            value = str(value)
            if len(value) >= min_length:
                pairs.append((value, None))
        else:
            pairs.extend(_walk(value, key, min_length))
    return pairs


def mask_all(pairs: Iterable[tuple[str, str | None]]) -> None:
    for value, name in pairs:
        mask_secret(value, name)


async def amask_all(pairs: Iterable[tuple[str, str | None]]) -> None:
    """On an event loop (a trigger): Airflow 3.3's ``amask_secret`` tells the supervisor without the
    synchronous send that raises ``DeadlockImminentError`` while another request is in flight; before it,
    the synchronous call runs in a worker thread, as the common-compat provider does."""
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:
        await asyncio.to_thread(mask_all, list(pairs))
        return
    for value, name in pairs:
        await amask_secret(value, name)
