"""The message trigger run on its own (``airflow dags test``, Airflow 3.2, a
non-deferrable sensor) against a real emulator: it fires for its match only, skips what
cannot be trusted, times out cleanly, and leaves the destination committed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from airflow_provider_app2app.client import App2AppClient
from airflow_provider_app2app.emulator.connections import airflow_connections
from airflow_provider_app2app.triggers.app2app import App2AppMessageTrigger
from tests.support.emulator import EmulatorProcess


def use(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def send(emulator: EmulatorProcess, sender: str, to: str, content: str, key: str, identity=None):
    username, password = emulator.credential("org1")
    identities = {}
    if identity is not None:
        identities = {emulator.uri(sender): identity}
    with App2AppClient(
        endpoint=emulator.endpoint, username=username, password=password, identities=identities
    ) as client:
        client.produce(emulator.uri(to), content, key=key, sender=emulator.uri(sender))


async def first_event(trigger: App2AppMessageTrigger) -> dict:
    events = trigger.run()
    try:
        return (await anext(events)).payload
    finally:
        await events.aclose()


async def test_message_with_a_signature_that_does_not_verify_is_skipped(
    emulator: EmulatorProcess, monkeypatch
):
    connections = airflow_connections(emulator.environment)
    receiver = dict(connections["app2app_org2_external"])
    extra = dict(receiver["extra"])
    wrong = Path(emulator.destination("org2-external")["certificate_path"]).read_text()
    extra["peer_certificates"] = json.dumps({emulator.uri("org1-external"): wrong})
    use(monkeypatch, "app2app_receiver", {**receiver, "extra": extra})
    org1 = emulator.destination("org1-external")
    identity = (
        Path(org1["private_key_path"]).read_text(),
        Path(org1["certificate_path"]).read_text(),
    )
    send(emulator, "org1-external", "org2-external", "forged?", "k", identity)
    send(emulator, "org1-managed", "org2-external", "genuine", "k")

    payload = await first_event(
        App2AppMessageTrigger(
            destination=emulator.uri("org2-external"),
            app2app_conn_id="app2app_receiver",
            match={"key": "k"},
            deadline=time.time() + 20,
        )
    )
    assert payload["status"] == "success"
    assert payload["message"]["content"] == "genuine"
    assert payload["message"]["sender"] == emulator.uri("org1-managed")
    assert payload["message"]["encrypted"] is True
    state = emulator.destination_status(emulator.uri("org2-external"))
    assert (state["log_length"], state["committed"]) == (2, 2)  # the skipped one too


async def test_deadline_fires_a_timeout_event_and_closes_the_socket(
    emulator: EmulatorProcess, monkeypatch
):
    use(monkeypatch, "app2app_org2", airflow_connections(emulator.environment)["app2app_org2"])
    trigger = App2AppMessageTrigger(
        destination=emulator.uri("org2-managed"),
        app2app_conn_id="app2app_org2",
        match={"key": "never"},
        deadline=time.time() + 1.5,
    )
    started = time.monotonic()
    payload = await first_event(trigger)
    assert payload["status"] == "timeout"
    assert "No message matching key exact 'never'" in payload["message"]
    assert time.monotonic() - started < 10
    assert trigger._client is None
    emulator.wait_for_status(lambda status: status["connections"] == [], timeout=5)


async def test_foreign_destination_fires_an_error_event_naming_the_fix(
    emulator: EmulatorProcess, monkeypatch
):
    use(monkeypatch, "app2app_org1", airflow_connections(emulator.environment)["app2app_org1"])
    payload = await first_event(
        App2AppMessageTrigger(
            destination=emulator.uri("org2-managed"), app2app_conn_id="app2app_org1"
        )
    )
    assert payload["status"] == "error"
    assert "org2-managed" in payload["message"]
    assert "org2" in payload["message"]


async def test_wrong_credentials_fire_an_error_event_without_the_password(
    emulator: EmulatorProcess, monkeypatch
):
    connection = {
        **airflow_connections(emulator.environment)["app2app_org2"],
        "password": "nope-123",
    }
    use(monkeypatch, "app2app_bad", connection)
    payload = await first_event(
        App2AppMessageTrigger(
            destination=emulator.uri("org2-managed"), app2app_conn_id="app2app_bad"
        )
    )
    assert payload["status"] == "error"
    assert "org2-app" in payload["message"]
    assert "nope-123" not in payload["message"]


@pytest.mark.parametrize("generation", ["modern", "legacy"])
async def test_both_protocol_generations_serve_the_trigger(
    emulator: EmulatorProcess, monkeypatch, generation
):
    connection = airflow_connections(emulator.environment)["app2app_org2"]
    connection = {**connection, "extra": {**connection["extra"], "socketio_version": generation}}
    use(monkeypatch, "app2app_gen", connection)
    send(emulator, "org1-managed", "org2-managed", "hello", f"g-{generation}")
    payload = await first_event(
        App2AppMessageTrigger(
            destination=emulator.uri("org2-managed"),
            app2app_conn_id="app2app_gen",
            match={"key": f"g-{generation}"},
            deadline=time.time() + 20,
        )
    )
    assert payload["message"]["content"] == "hello"
    emulator.wait_for_status(lambda status: status["connections"] == [], timeout=5)
