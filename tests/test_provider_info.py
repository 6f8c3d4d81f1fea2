"""The provider as Airflow discovers it: entry point, schema-valid metadata, connection forms."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_postage.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent
AIRFLOW_3 = airflow.__version__.startswith("3.")


def test_runtime_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_types_against_repository_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    conn_schema = schema["properties"]["connection-types"]
    jsonschema.validate(get_provider_info()["connection-types"], conn_schema)
    assert [c["connection-type"] for c in get_provider_info()["connection-types"]] == ["click2mail", "pitney_bowes"]


def test_listed_modules_import() -> None:
    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(kind, []):
            for module in entry["python-modules"]:
                __import__(module)


def test_get_provider_info_is_import_free() -> None:
    code = (
        "import sys; before = set(sys.modules); "
        "import airflow_provider_postage.get_provider_info as m; m.get_provider_info(); "
        "new = {n.split('.')[0] for n in set(sys.modules) - before}; "
        "print(sorted(new - {'airflow_provider_postage'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_entry_point_discovery() -> None:
    [entry] = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_postage")
    ]
    assert entry.load()() == get_provider_info()
    assert entry.dist is not None and entry.dist.metadata["Name"] == "airflow-provider-postage"


def test_providers_manager_sees_both_connection_types() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-postage" in manager.providers
    assert manager.hooks["click2mail"].hook_class_name.endswith("Click2MailHook")
    assert manager.hooks["pitney_bowes"].hook_class_name.endswith("PitneyBowesHook")
    widgets = manager.connection_form_widgets
    sensitive = {name for name, info in widgets.items() if info.is_sensitive and "click2mail" in name}
    assert sensitive == {"extra__click2mail__card_number_secret", "extra__click2mail__card_cvv_secret"}
    assert {name for name in widgets if name.startswith("extra__pitney_bowes__")} == {
        "extra__pitney_bowes__environment",
        "extra__pitney_bowes__developer_id",
        "extra__pitney_bowes__postal_reporting_number",
        "extra__pitney_bowes__verify_ssl",
        "extra__pitney_bowes__ca_bundle",
        "extra__pitney_bowes__max_daily_amount",
        "extra__pitney_bowes__max_monthly_amount",
        "extra__pitney_bowes__breaker_threshold",
    }
    assert manager.field_behaviours["click2mail"]["relabeling"]["login"] == "Username"


def _legacy_fields(hook_class: type) -> dict[str, tuple[str, bool, object]]:
    from wtforms import Form

    widgets = hook_class.get_connection_form_widgets()
    form = type("F", (Form,), widgets)()
    return {
        name: (str(form[name].label.text), form[name].type == "PasswordField", form[name].default) for name in widgets
    }


@pytest.mark.parametrize("conn_type", ["click2mail", "pitney_bowes"])
def test_classmethod_forms_match_declarative_fields(conn_type: str) -> None:
    pytest.importorskip(
        "wtforms", reason="the wtforms connection form exists only where FAB is installed (Airflow 2.11)"
    )
    pytest.importorskip("flask_appbuilder")
    from airflow_provider_postage.hooks.postage import Click2MailHook, PitneyBowesHook

    hook_class = {"click2mail": Click2MailHook, "pitney_bowes": PitneyBowesHook}[conn_type]
    [declared] = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    expected = {
        name: (spec["label"], spec["schema"].get("format") == "password", spec["schema"].get("default"))
        for name, spec in declared["conn-fields"].items()
    }
    assert _legacy_fields(hook_class) == expected
    behaviour = hook_class.get_ui_field_behaviour()
    ui = declared["ui-field-behaviour"]
    assert behaviour == {
        "hidden_fields": ui["hidden-fields"],
        "relabeling": ui["relabeling"],
        "placeholders": ui["placeholders"],
    }


def test_airflow_cli_lists_provider_and_hooks() -> None:
    airflow_bin = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    providers = subprocess.run([airflow_bin, "providers", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert "airflow-provider-postage" in providers.stdout, providers.stderr[-2000:]
    hooks = subprocess.run([airflow_bin, "providers", "hooks"], capture_output=True, text=True, env=env, timeout=120)
    assert "Click2MailHook" in hooks.stdout and "PitneyBowesHook" in hooks.stdout, hooks.stderr[-2000:]


def test_every_secret_extra_is_one_airflow_hides_by_its_key() -> None:
    """Airflow hides an extra in the REST API, the UI and the CLI by its key alone; ``format: password``
    only changes the widget. So every password field's key must be one Airflow's masker calls sensitive."""
    try:
        from airflow._shared.secrets_masker import redact, should_hide_value_for_key
    except ImportError:  # Airflow 2.11
        from airflow.utils.log.secrets_masker import redact, should_hide_value_for_key  # type: ignore[no-redef]

    for conn_type in get_provider_info()["connection-types"]:
        for name, spec in conn_type.get("conn-fields", {}).items():
            secret = spec["schema"].get("format") == "password"
            assert should_hide_value_for_key(name) == secret, name
    extra = {"card_number_secret": "4111111111111111", "card_cvv_secret": "123", "billing_zip": "34567"}
    assert redact(extra) == {"card_number_secret": "***", "card_cvv_secret": "***", "billing_zip": "34567"}


def test_the_provider_info_declares_every_built_in_service_as_the_registry_knows_it() -> None:
    import importlib

    from airflow_provider_postage import registry

    declared = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    built_in = {
        s.conn_type: s for s in registry.services() if type(s).__module__.startswith("airflow_provider_postage")
    }
    assert set(declared) == set(built_in)
    for conn_type, service in built_in.items():
        entry = declared[conn_type]
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.service is service and hook.conn_type == conn_type
        assert (entry["hook-name"], entry["conn-fields"], entry["ui-field-behaviour"]) == (
            service.hook_name,
            service.conn_fields,
            service.ui_behaviour,
        )
