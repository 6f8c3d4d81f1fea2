"""JSON without floats: every number is written from a Decimal's digits and read back as Decimal."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "json_number", "loads", "plain_number"]


def plain_number(value: Decimal) -> str:
    """Shortest exact positional text of a finite Decimal: ``Decimal("12.50") -> "12.5"``, zero -> ``"0"``."""
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def json_number(value: Decimal | int) -> str:
    """JSON number text of an amount, shortest exact form: 457.22, 500, 12.5, 0."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    if isinstance(value, int):
        return str(value)
    return plain_number(value)


def dumps(obj: Any) -> str:
    """Compact JSON text; Decimal becomes a JSON number written from its digits; floats are refused."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, Decimal):
        return plain_number(obj)
    if isinstance(obj, float):
        raise TypeError("floats are not allowed in sandbox JSON; use Decimal")
    if isinstance(obj, str):
        return json.dumps(obj)
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, Sequence):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as Decimal (never float)."""
    return json.loads(text, parse_float=Decimal)
