"""The Postage page in the Airflow UI (Airflow 3 only): balances of every postage connection, a chart of
them over time with the purchases marked, the recent purchases, and a Top up button that starts a funding
DAG through Airflow's own REST API.

Airflow imports plugins in every process (the task runner too, for macros), and only the API server serves
the page: this module stays light, and the FastAPI app (:mod:`.app`) is built on the first request.
On Airflow 2.11 the plugin is empty (its UI has no FastAPI apps nor external views).

Registered twice, as Airflow expects of a provider: the ``airflow.plugins`` entry point (always loaded)
and the provider info's ``plugins`` key (loaded when ``[core] lazy_discover_providers`` is False).
"""

from __future__ import annotations

import threading
from typing import Any

import airflow
from airflow.providers.common.compat.sdk import AirflowPlugin

__all__ = ["URL_PREFIX", "PostagePlugin"]

#: Where the page is mounted on the API server.
URL_PREFIX = "/postage"
_AIRFLOW_3 = int(airflow.__version__.split(".")[0]) >= 3

# A postage stamp with a perforated edge, as the nav icon (a data URL: no route to authorise).
_ICON = (
    "data:image/svg+xml;utf8,"
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='{color}' "
    "stroke-width='1.8' stroke-linejoin='round'><path d='M4 3h16v18H4z' stroke-dasharray='2 1.5'/>"
    "<path d='M8 8h8v7H8z'/><path d='M9 18h6'/></svg>"
)


class _PageApp:
    """The ASGI app Airflow mounts at ``/postage``: builds the FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_postage.plugins.app import create_app

                    self._app = create_app()
        await self._app(scope, receive, send)


class PostagePlugin(AirflowPlugin):
    name = "postage"
    if _AIRFLOW_3:
        fastapi_apps = [{"app": _PageApp(), "url_prefix": URL_PREFIX, "name": "Postage"}]
        external_views = [
            {
                "name": "Postage",
                "href": f"{URL_PREFIX}/ui",
                "url_route": "postage",
                "destination": "nav",
                "nav_top_level": True,
                "icon": _ICON.replace("{color}", "%23334155"),
                "icon_dark_mode": _ICON.replace("{color}", "%23e2e8f0"),
            }
        ]
