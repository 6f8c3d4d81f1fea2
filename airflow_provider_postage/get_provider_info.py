"""Provider metadata read by every Airflow process: keep this module free of imports.

It is declarative on purpose: each built-in service (``services/``) takes its form from here, and a test
checks that every registered built-in service appears here with the same facts.

The connection forms are declared here once. Airflow 3.2+ reads ``conn-fields`` and
``ui-field-behaviour`` from this dict; the hooks' legacy classmethods (for Airflow 2.11) are generated
from the same dict, so the two can never disagree.
"""


def _text(label, description=None, default=None, enum=None, password=False):
    schema: dict = {"type": ["string", "null"]}
    if password:
        schema["format"] = "password"
    if enum is not None:
        schema["enum"] = enum
    if default is not None:
        schema["default"] = default
    field: dict = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    return field


_VERIFY_SSL = {
    "label": "Verify TLS certificates",
    "description": "Turn off only for a private endpoint with a self-signed certificate",
    "schema": {"type": ["boolean", "null"], "default": True},
}
_CA_BUNDLE = _text("CA bundle (optional)", "Path of a PEM file of CAs to trust instead of the system's")
_FUNDING = {
    "max_daily_amount": _text("Daily spend cap (optional)", "Most this provider may buy on the account per UTC day"),
    "max_monthly_amount": _text("Monthly spend cap (optional)", "Most it may buy per calendar month (UTC)"),
    "breaker_threshold": _text(
        "Refusals before purchases stop", "Purchases refused in a row that open the breaker (default 3)"
    ),
}

CLICK2MAIL_FIELDS = {
    "environment": _text(
        "Environment",
        "staging (test card accepted) or production; the host field, if set, overrides its URL",
        default="staging",
        enum=["staging", "production"],
    ),
    "billing_name": _text("Billing name", "Name as it appears on the card"),
    "billing_address1": _text("Billing address line 1"),
    "billing_city": _text("Billing city"),
    "billing_state": _text("Billing state", "Two-letter state code, e.g. MO"),
    "billing_zip": _text("Billing ZIP code", "12345 or 12345-6789"),
    # The keys hold "secret" so that Airflow hides the values (REST API, UI, CLI): it goes by the key.
    "card_number_secret": _text("Card number", "Used only for credit purchases", password=True),
    "card_exp_month": _text("Card expiry month", "01 to 12"),
    "card_exp_year": _text("Card expiry year", "2 or 4 digits"),
    "card_cvv_secret": _text("Card CVV", "3 digits (4 for American Express)", password=True),
    "card_type": _text("Card type", "VI, MC, DI or AE", default="VI", enum=["VI", "MC", "DI", "AE"]),
    "verify_ssl": _VERIFY_SSL,
    "ca_bundle": _CA_BUNDLE,
    **_FUNDING,
}

PITNEY_BOWES_FIELDS = {
    "environment": _text(
        "Environment",
        "sandbox or production; the host field, if set, overrides its URL",
        default="sandbox",
        enum=["sandbox", "production"],
    ),
    "developer_id": _text("Developer ID", "Your Pitney Bowes developer ID (Developer Hub profile)"),
    "postal_reporting_number": _text(
        "Postal reporting number", "The merchant's Shipper ID, from Get Merchant Accounts"
    ),
    "verify_ssl": _VERIFY_SSL,
    "ca_bundle": _CA_BUNDLE,
    **_FUNDING,
}

CLICK2MAIL_UI = {
    "hidden-fields": ["schema", "extra"],
    "relabeling": {"login": "Username", "password": "Password", "host": "Base URL (optional)"},
    "placeholders": {"host": "https://stage-rest.click2mail.com/molpro"},
}

PITNEY_BOWES_UI = {
    "hidden-fields": ["schema", "extra"],
    "relabeling": {"login": "API key", "password": "API secret", "host": "Base URL (optional)"},
    "placeholders": {"host": "https://shipping-api-sandbox.pitneybowes.com"},
}

_MODULES = {
    "hooks": [
        "airflow_provider_postage.hooks.postage",
        "airflow_provider_postage.hooks.click2mail",
        "airflow_provider_postage.hooks.pitney_bowes",
    ],
    "operators": [
        "airflow_provider_postage.operators.postage",
        "airflow_provider_postage.operators.fetch",
        "airflow_provider_postage.operators.purchase",
        "airflow_provider_postage.operators.autorefill",
    ],
    "sensors": ["airflow_provider_postage.sensors.postage"],
    "triggers": ["airflow_provider_postage.triggers.postage"],
}


_CONFIG = {
    "postage": {
        "description": "Settings of airflow-provider-postage.",
        "options": {
            "redis_url": {
                "description": "A Redis URL (extra [redis]) through which the triggerers of a cluster share "
                "balance reads: one request per account per poll interval for the whole cluster. Empty: "
                "each process reads for itself. Reads only; purchases never depend on it.",
                "version_added": "0.2.0",
                "type": "string",
                "example": "redis://localhost:6379/1",
                "default": "",
            },
            "ui_top_up_dag_id": {
                "description": "The DAG the Postage page's Top up button starts (through the REST API, with the "
                "user's own permissions).",
                "version_added": "0.2.0",
                "type": "string",
                "example": "postage_scheduled_top_up",
                "default": "postage_scheduled_top_up",
            },
            "ui_refresh_seconds": {
                "description": "How long the Postage page serves a balance before reading it again (per account, "
                "per API server process).",
                "version_added": "0.2.0",
                "type": "float",
                "example": "60",
                "default": "60",
            },
            "ui_history_points": {
                "description": "Balance readings the Postage page keeps per account for its chart.",
                "version_added": "0.2.0",
                "type": "integer",
                "example": "500",
                "default": "500",
            },
        },
    }
}


def get_provider_info():
    integration = "Postage (Click2Mail, Pitney Bowes)"
    info = {
        "package-name": "airflow-provider-postage",
        "name": "Postage",
        "description": "Keeps Click2Mail credit and Pitney Bowes postage accounts funded.",
        "integrations": [{"integration-name": integration, "tags": ["service"]}],
        "connection-types": [
            {
                "connection-type": "click2mail",
                "hook-class-name": "airflow_provider_postage.hooks.click2mail.Click2MailHook",
                "hook-name": "Click2Mail",
                "conn-fields": CLICK2MAIL_FIELDS,
                "ui-field-behaviour": CLICK2MAIL_UI,
            },
            {
                "connection-type": "pitney_bowes",
                "hook-class-name": "airflow_provider_postage.hooks.pitney_bowes.PitneyBowesHook",
                "hook-name": "Pitney Bowes",
                "conn-fields": PITNEY_BOWES_FIELDS,
                "ui-field-behaviour": PITNEY_BOWES_UI,
            },
        ],
        "config": _CONFIG,
    }
    for kind, modules in _MODULES.items():
        info[kind] = [{"integration-name": integration, "python-modules": modules}]
    # The Postage page (Airflow 3 UI); also an ``airflow.plugins`` entry point, which loads even when
    # ``[core] lazy_discover_providers`` is True (the default), where this key is not read.
    info["plugins"] = [{"name": "postage", "plugin-class": "airflow_provider_postage.plugins.PostagePlugin"}]
    return info
