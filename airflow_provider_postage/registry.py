"""The services this provider knows, by connection type. The built-in ones register on first use; a
new one calls :func:`register` from its own module (a test's, or another package's)."""

from __future__ import annotations

import threading
from typing import TypeVar

from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.services.base import PostageService

__all__ = ["register", "service_for", "services"]

S = TypeVar("S", bound=PostageService)

_SERVICES: dict[str, PostageService] = {}
_LOCK = threading.Lock()
_BUILTINS = ("airflow_provider_postage.services.click2mail", "airflow_provider_postage.services.pitney_bowes")
_loaded = False


def register(service: S) -> S:
    """Make ``service`` the one for its connection type (replacing an earlier one of that type)."""
    with _LOCK:
        _SERVICES[service.conn_type] = service
    return service


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        import importlib

        for module in _BUILTINS:
            importlib.import_module(module)
        _loaded = True


def services() -> list[PostageService]:
    _load_builtins()
    return list(_SERVICES.values())


def service_for(conn_type: str | None, conn_id: str = "?") -> PostageService:
    """The service of a connection type, or a PostageConfigError naming the known ones."""
    _load_builtins()
    service = _SERVICES.get(conn_type or "")
    if service is None:
        known = ", ".join(sorted(_SERVICES))
        raise PostageConfigError("conn_type", f"connection {conn_id!r} has type {conn_type!r}; expected one of {known}")
    return service
