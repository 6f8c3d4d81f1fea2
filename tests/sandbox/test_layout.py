"""The sandbox's shape: module sizes and imports, the public names other code imports, settings and control bodies."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_postage import sandbox as sandbox_pkg
from airflow_provider_postage.sandbox import (
    InvalidSettingError,
    SandboxServer,
    SandboxSettings,
    SandboxState,
    create_app,
)

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "airflow_provider_postage" / "sandbox"
MODULES = sorted(SANDBOX_DIR.rglob("*.py"))


def test_the_sandbox_is_split_into_modules_of_at_most_400_lines() -> None:
    assert {p.relative_to(SANDBOX_DIR).as_posix() for p in MODULES} >= {
        "click2mail/state.py",
        "click2mail/rules.py",
        "click2mail/routes.py",
        "pitney_bowes/state.py",
        "pitney_bowes/rules.py",
        "pitney_bowes/routes.py",
        "faults.py",
        "wire.py",
        "tls.py",
        "server.py",
        "control.py",
        "seed.py",
        "settings.py",
    }
    sizes = {p.relative_to(SANDBOX_DIR).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES}
    assert {name: n for name, n in sizes.items() if n > 400} == {}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(SANDBOX_DIR).as_posix())
def test_no_module_imports_the_provider_or_airflow(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in {"airflow", "airflow_provider_postage"}, f"{path.name} imports {name}"


def test_historical_import_paths_keep_working() -> None:
    state_module = importlib.import_module("airflow_provider_postage.sandbox.state")
    for name in state_module.__all__:
        assert hasattr(state_module, name), name
    for name in ("DEMO_BILLING", "DEFAULT_SEED", "DEFAULT_TOKEN_TTL", "SandboxState", "Fault", "WireFault", "Refill"):
        assert name in state_module.__all__
    assert [n for n in dir(state_module) if n.startswith("DEFAULT_")] == sorted(
        n for n in state_module.__all__ if n.startswith("DEFAULT_")
    )
    for name in sandbox_pkg.__all__:
        assert hasattr(sandbox_pkg, name), name
    app_module = importlib.import_module("airflow_provider_postage.sandbox.app")
    assert app_module.create_app is create_app
    rules = importlib.import_module("airflow_provider_postage.sandbox.rules")
    for name in rules.__all__:
        assert hasattr(rules, name), name


def test_demo_billing_uses_the_secret_extra_names() -> None:
    from airflow_provider_postage.sandbox.state import DEMO_BILLING

    assert DEMO_BILLING == {
        "billing_name": "Awesome User",
        "billing_address1": "221B Baker St",
        "billing_city": "Springfield",
        "billing_state": "MO",
        "billing_zip": "34567",
        "card_number_secret": "4111111111111111",
        "card_exp_month": "12",
        "card_exp_year": "2030",
        "card_cvv_secret": "123",
        "card_type": "VI",
    }


def test_settings_are_one_validated_dataclass() -> None:
    settings = SandboxSettings()
    assert dataclasses.is_dataclass(settings) and settings.to_mapping() == SandboxState().settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.token_ttl = 5  # type: ignore[misc]
    assert settings.updated({"settle_seconds": 3}).settle_seconds == 3
    for bad in ({"token_ttl": -1}, {"compress": "yes"}, {"c2m_purchase_reply": "x"}, {"gzip": True}):
        with pytest.raises(InvalidSettingError):
            settings.updated(bad)
    state = SandboxState()
    state.update_settings({"chunked": False, "settle_seconds": 2})
    assert state.sandbox_settings == SandboxSettings(chunked=False, settle_seconds=2)
    with pytest.raises(InvalidSettingError):  # all checked before any is applied
        state.update_settings({"compress": False, "token_ttl": "long"})
    assert state.compress is True


CONTROL_POSTS = [
    "/_sandbox/c2m/accounts/demo-user",
    "/_sandbox/c2m/accounts/demo-user/drain",
    "/_sandbox/pb/merchants/900001",
    "/_sandbox/pb/merchants/900001/drain",
    "/_sandbox/pb/merchants/900001/autorefill",
    "/_sandbox/pb/merchants/900001/transactions",
    "/_sandbox/faults",
    "/_sandbox/settings",
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with SandboxServer() as server:
        yield server.url


@pytest.mark.parametrize("path", CONTROL_POSTS)
def test_control_bodies_refuse_unknown_fields(url: str, path: str) -> None:
    body = {"endpoint": "c2m_credit", "transactions": [], "colour": "red"}
    r = requests.post(url + path, json=body, timeout=5)
    assert r.status_code == 400, r.text
    assert "unknown field 'colour'" in r.json()["error"] and "allowed:" in r.json()["error"]


@pytest.mark.parametrize("path", CONTROL_POSTS)
def test_control_bodies_must_be_json(url: str, path: str) -> None:
    r = requests.post(url + path, data=b"{not json", timeout=5)
    assert r.status_code == 400 and r.json() == {"error": "the body is not valid JSON"}
