"""The Postage page's FastAPI app, mounted by Airflow 3's API server at ``/postage``.

Airflow does not authenticate plugin apps: every route here asks for the user (``get_user``: the UI's
``_token`` cookie or a bearer token; anonymous gets 401) and for the core permission that matches what it
shows (403 otherwise):

=============================  ===============================================================
``GET /ui``, ``/static/*``     the page and its files: connections, read
``GET /api/balances``          connections, read (each listed connection checked on its own)
``GET /api/history``           connections and variables, read (the ledgers are Variables)
``GET /api/top-up?dag_id=``    the DAG, read; says whether the user may create its DAG runs
=============================  ===============================================================

The Top up button posts to Airflow's own ``POST /api/v2/dags/{dag_id}/dagRuns`` from the browser, with the
user's own session, so Airflow itself checks that the user may create runs of that DAG: this app never buys
and never starts anything.

Options (``airflow.cfg`` or ``AIRFLOW__POSTAGE__*``): ``[postage] ui_top_up_dag_id`` (default
``postage_scheduled_top_up``), ``ui_refresh_seconds`` (60: at most one balance read per account and API
server process per interval), ``ui_history_points`` (500 reads kept in memory per account).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import (
    ConnectionDetails,
    DagAccessEntity,
    DagDetails,
)
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import (
    GetUserDep,
    get_user,
    requires_access_connection,
    requires_access_dag,
    requires_access_variable,
)
from airflow.configuration import conf
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse

from airflow_provider_postage.plugins import balances as balance_reads
from airflow_provider_postage.plugins import ledger as ledgers

STATIC = Path(__file__).with_name("static")
#: The files the page loads; anything else under /static is a 404.
STATIC_FILES = {
    "postage.css": "text/css",
    "postage.js": "text/javascript",
    "chart.js": "text/javascript",
}
DEFAULT_TOP_UP_DAG_ID = "postage_scheduled_top_up"
_NO_STORE = {"Cache-Control": "no-store"}

READ_CONNECTIONS = Depends(requires_access_connection(method="GET"))
READ_VARIABLES = Depends(requires_access_variable(method="GET"))
READ_DAG = Depends(requires_access_dag(method="GET"))


def settings() -> dict[str, Any]:
    return {
        "top_up_dag_id": conf.get("postage", "ui_top_up_dag_id", fallback=DEFAULT_TOP_UP_DAG_ID),
        "refresh_seconds": conf.getfloat(
            "postage", "ui_refresh_seconds", fallback=balance_reads.DEFAULT_REFRESH_SECONDS
        ),
        "history_points": conf.getint("postage", "ui_history_points", fallback=balance_reads.DEFAULT_HISTORY_POINTS),
    }


def _page(config: dict[str, Any]) -> str:
    # JSON in a script element: "<" escaped so no value can close the element.
    data = json.dumps(config).replace("<", "\\u003c")
    return (STATIC / "index.html").read_text(encoding="utf-8").replace("{{CONFIG}}", data)


def create_app(cache: balance_reads.BalanceCache | None = None) -> FastAPI:
    options = settings()
    cache = cache or balance_reads.BalanceCache(options["refresh_seconds"], options["history_points"])
    app = FastAPI(
        title="Postage",
        dependencies=[Depends(get_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.balance_cache = cache

    @app.get("/ui", response_class=HTMLResponse, dependencies=[READ_CONNECTIONS])
    def page(user: GetUserDep) -> HTMLResponse:
        config = {
            "top_up_dag_id": options["top_up_dag_id"],
            "refresh_seconds": cache.refresh_seconds,
            "user": user.get_name(),
        }
        return HTMLResponse(_page(config), headers=_NO_STORE)

    @app.get("/static/{name}", dependencies=[READ_CONNECTIONS])
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, "Not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    def readable(user: Any, conns: list[balance_reads.PostageConnection]) -> list[balance_reads.PostageConnection]:
        manager = get_auth_manager()
        return [
            conn
            for conn in conns
            if manager.is_authorized_connection(
                method="GET", details=ConnectionDetails(conn_id=conn.conn_id), user=user
            )
        ]

    @app.get("/api/balances", dependencies=[READ_CONNECTIONS])
    def api_balances(user: GetUserDep, session: SessionDep) -> Any:
        conns = readable(user, balance_reads.list_connections(session))
        session.rollback()  # no transaction held open while the services answer
        readings = cache.get_many([balance_reads.read_request(conn) for conn in conns])
        return {
            "refresh_seconds": cache.refresh_seconds,
            "conn_types": balance_reads.postage_conn_types(),
            "connections": [
                balance_reads.connection_row(conn, reading, cache)
                for conn, reading in zip(conns, readings, strict=True)
            ],
        }

    @app.get("/api/history", dependencies=[READ_CONNECTIONS, READ_VARIABLES])
    def api_history(user: GetUserDep, session: SessionDep) -> Any:
        found, problems = ledgers.read_ledgers(session)
        allowed = {conn.conn_id for conn in readable(user, balance_reads.list_connections(session))}
        allowed |= {ledger.conn_id for ledger in found if ledger.conn_id}  # ledgers of since-deleted connections
        page_points = {key: points for key, points in cache.history().items() if key[0] in allowed}
        return {
            "series": ledgers.chart_series(found, page_points),
            "purchases": ledgers.purchases(found),
            "ledger_errors": problems,
        }

    @app.get("/api/top-up", dependencies=[READ_DAG])
    def api_top_up(user: GetUserDep, session: SessionDep, dag_id: str = Query(min_length=1, max_length=250)) -> Any:
        from airflow.models.dag import DagModel

        dag = session.get(DagModel, dag_id)
        team = DagModel.get_team_name(dag_id, session=session) if dag is not None else None
        allowed = get_auth_manager().is_authorized_dag(
            method="POST",
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=dag_id, team_name=team),
            user=user,
        )
        return {
            "dag_id": dag_id,
            "exists": dag is not None,
            "is_paused": bool(dag.is_paused) if dag is not None else None,
            "may_trigger": bool(allowed),
        }

    return app
