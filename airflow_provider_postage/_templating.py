"""Which operator arguments can be checked when the DAG file is parsed."""

from __future__ import annotations

from decimal import Decimal


def known_at_parse_time(value: object) -> bool:
    """True for a plain value (so a bad one fails the DAG import, not a run at 3 a.m.); False for a Jinja
    template, an XComArg or a mapped argument, which are checked once rendered, before any request."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    return value is None or isinstance(value, (int, float, Decimal))
