"""The hook against a real emulator: test_connection, wrong credentials, produce."""

from __future__ import annotations

import json

from airflow_provider_app2app.emulator.connections import airflow_connections
from airflow_provider_app2app.hooks.app2app import App2AppHook
from tests.support.emulator import EmulatorProcess


def use(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def test_test_connection_authenticates_and_reads_the_address_book(
    emulator: EmulatorProcess, monkeypatch
):
    use(monkeypatch, "app2app_org1", airflow_connections(emulator.environment)["app2app_org1"])
    ok, message = App2AppHook("app2app_org1").test_connection()
    assert ok, message
    assert "4 destination(s) in 2 membership(s)" in message


def test_wrong_password_is_reported_with_the_username_and_without_the_password(
    emulator: EmulatorProcess, monkeypatch
):
    connection = {
        **airflow_connections(emulator.environment)["app2app_org1"],
        "password": "wrong-pass-1",
    }
    use(monkeypatch, "app2app_wrong", connection)
    ok, message = App2AppHook("app2app_wrong").test_connection()
    assert not ok
    assert "org1-app" in message
    assert "wrong-pass-1" not in message


def test_hook_produce_returns_reports_and_the_message_arrives(
    emulator: EmulatorProcess, monkeypatch
):
    use(monkeypatch, "app2app_org1", airflow_connections(emulator.environment)["app2app_org1"])
    to = emulator.uri("org2-managed")
    reports = App2AppHook("app2app_org1").produce(
        [{"to": to, "content": b"\x00\x01", "key": "bin"}, {"to": to, "content": "t", "key": None}]
    )
    assert [r["key"] for r in reports] == ["bin", None]
    assert all(r["timestamp"] for r in reports)
    assert emulator.destination_status(to)["log_length"] == 2
