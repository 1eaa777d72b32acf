"""Event-driven scheduling: ``MessageQueueTrigger(scheme="app2app")`` resolves to the
watcher trigger, fires once per matching message, and never fires an error event."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

from airflow_provider_app2app.client import App2AppClient
from airflow_provider_app2app.emulator.connections import airflow_connections
from airflow_provider_app2app.triggers.app2app import App2AppWatcherTrigger
from tests.support.emulator import EmulatorProcess


def use(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def test_scheme_app2app_resolves_to_the_watcher_trigger():
    trigger = MessageQueueTrigger(scheme="app2app", destination="kld://x", app2app_conn_id="c")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_app2app.triggers.app2app.App2AppWatcherTrigger"
    assert kwargs["destination"] == "kld://x"


async def test_watcher_fires_once_per_matching_message(emulator: EmulatorProcess, monkeypatch):
    use(monkeypatch, "app2app_org2", airflow_connections(emulator.environment)["app2app_org2"])
    username, password = emulator.credential("org1")
    to = emulator.uri("org2-managed")
    with App2AppClient(
        endpoint=emulator.endpoint,
        username=username,
        password=password,
        default_sender=emulator.uri("org1-managed"),
    ) as client:
        for key in ("order-1", "other-1", "order-2"):
            client.produce(to, {"key": key}, key=key)

    trigger = MessageQueueTrigger(
        scheme="app2app",
        app2app_conn_id="app2app_org2",
        destination=to,
        match={"key": "order-*", "key_match": "glob"},
        content_format="json",
    )
    events = trigger.run()
    try:
        first = await asyncio.wait_for(anext(events), 20)
        second = await asyncio.wait_for(anext(events), 20)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 1.0)
    finally:
        await events.aclose()
    assert [first.payload["key"], second.payload["key"]] == ["order-1", "order-2"]
    assert first.payload["content"] == {"key": "order-1"}
    state = emulator.destination_status(to)
    assert state["committed"] >= 2


async def test_watcher_never_fires_an_error_event_when_the_service_is_down(monkeypatch):
    use(
        monkeypatch,
        "app2app_down",
        {
            "conn_type": "app2app",
            "host": "ws://127.0.0.1:9/api/v1",
            "login": "u",
            "password": "secret-pw",
            "extra": {"socketio_version": "modern"},
        },
    )
    trigger = App2AppWatcherTrigger(
        destination="kld://x", app2app_conn_id="app2app_down", retry_delay=0.2
    )
    events = trigger.run()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 2.0)
    finally:
        await events.aclose()
