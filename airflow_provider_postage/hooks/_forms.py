"""Airflow 2.11's connection form, generated from a service's declarative ``conn-fields`` (which Airflow
3.x reads from the provider info directly), so the two can never disagree."""

from __future__ import annotations

from typing import Any


def legacy_form_widgets(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """wtforms widgets for each extra field."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in fields.items():
        schema = spec["schema"]
        kwargs: dict[str, Any] = {"description": spec.get("description")}
        if "default" in schema:
            kwargs["default"] = schema["default"]
        if "boolean" in schema["type"]:
            widgets[name] = BooleanField(lazy_gettext(spec["label"]), **kwargs)
        elif schema.get("format") == "password":
            widgets[name] = PasswordField(lazy_gettext(spec["label"]), widget=BS3PasswordFieldWidget(), **kwargs)
        else:
            widgets[name] = StringField(lazy_gettext(spec["label"]), widget=BS3TextFieldWidget(), **kwargs)
    return widgets


def legacy_ui_behaviour(ui: dict[str, Any]) -> dict[str, Any]:
    return {
        "hidden_fields": list(ui["hidden-fields"]),
        "relabeling": dict(ui["relabeling"]),
        "placeholders": dict(ui["placeholders"]),
    }
