"""The hook reads ``AIRFLOW_CONN_*`` in both the URI and the JSON form through Airflow's
own connection parsing."""

from __future__ import annotations

import json

import pytest

from airflow_provider_app2app.hooks.app2app import App2AppHook
from airflow_provider_app2app.hooks.connection_settings import ConnectionConfigurationError

DEST = "kld://app2app/m/u0mem/e/u0env/s/u0svc/d/orders"


def test_uri_form_with_bare_host_means_wss_and_carries_extras(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP2APP_URI",
        "app2app://u0appcred:se%2Fcret@tenant.example.io/api/v1"
        "?default_destination=kld%3A%2F%2Fapp2app%2Fm%2Fu0mem%2Fe%2Fu0env%2Fs%2Fu0svc%2Fd%2Forders"
        "&read_ahead=5",
    )
    settings = App2AppHook("app2app_uri").get_client_settings()
    assert settings.parsed_endpoint.console_url == "wss://tenant.example.io/api/v1"
    assert (settings.username, settings.password) == ("u0appcred", "se/cret")
    assert settings.default_sender == DEST
    assert settings.tuning_parameters.read_ahead == 5


def test_json_form_keeps_the_endpoint_as_given(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP2APP_JSON",
        json.dumps(
            {
                "conn_type": "app2app",
                "host": "ws://127.0.0.1:8765/api/v1",
                "login": "org1-app",
                "password": "pw-123456",
                "extra": {"default_destination": DEST, "socketio_version": "legacy"},
            }
        ),
    )
    hook = App2AppHook("app2app_json")
    settings = hook.get_client_settings()
    assert settings.parsed_endpoint.base_url == "http://127.0.0.1:8765"
    assert settings.socketio_version == "legacy"
    assert hook.default_destination() == DEST


def test_bad_extra_in_the_environment_names_connection_and_field(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP2APP_BAD",
        json.dumps(
            {
                "conn_type": "app2app",
                "host": "wss://h/api/v1",
                "login": "u",
                "password": "p",
                "extra": {"read_ahed": 3},
            }
        ),
    )
    with pytest.raises(ConnectionConfigurationError, match=r"'app2app_bad'.*read_ahed"):
        App2AppHook("app2app_bad").get_client_settings()


def test_test_connection_reports_an_unreachable_endpoint_without_raising(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP2APP_DOWN",
        json.dumps(
            {
                "conn_type": "app2app",
                "host": "ws://127.0.0.1:9/api/v1",
                "login": "u",
                "password": "secret-pw",
                "extra": {"socketio_version": "modern"},
            }
        ),
    )
    ok, message = App2AppHook("app2app_down").test_connection()
    assert ok is False
    assert "127.0.0.1:9" in message
    assert "secret-pw" not in message
