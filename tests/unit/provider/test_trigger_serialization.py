"""Triggers serialise to exact JSON-native kwargs and rebuild identically (STYLE.md)."""

from __future__ import annotations

import importlib
import json

import pytest

from airflow_provider_app2app.protocol.matching import FilterError
from airflow_provider_app2app.triggers.app2app import (
    App2AppDeliveryTrigger,
    App2AppMessageTrigger,
    App2AppWatcherTrigger,
)
from airflow_provider_app2app.triggers.destination_stream import SHARED_STREAMS_AVAILABLE

DEST = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-managed"


def rebuild(trigger):
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return cls(**json.loads(json.dumps(kwargs)))


def test_message_trigger_serialises_to_the_exact_kwargs():
    trigger = App2AppMessageTrigger(
        destination=DEST,
        app2app_conn_id="org2",
        match={"key": "req-*", "key_match": "glob"},
        content_format="json",
        retention=30,
        dead_letter_destination="kld://dlq",
        read_ahead=50,
        deadline=1700000000.5,
    )
    assert trigger.serialize() == (
        "airflow_provider_app2app.triggers.app2app.App2AppMessageTrigger",
        {
            "destination": DEST,
            "app2app_conn_id": "org2",
            "match": {
                "key": "req-*",
                "key_match": "glob",
                "sender": None,
                "json_field": None,
                "json_value": None,
            },
            "content_format": "json",
            "retention": 30.0,
            "dead_letter_destination": "kld://dlq",
            "read_ahead": 50,
            "use_shared_stream": True,
            "deadline": 1700000000.5,
        },
    )


@pytest.mark.parametrize(
    "trigger",
    [
        App2AppMessageTrigger(destination=DEST),
        App2AppMessageTrigger(destination=DEST, match={"json_field": "a.b", "json_value": [1]}),
        App2AppWatcherTrigger(destination=DEST, retry_delay=2),
        App2AppDeliveryTrigger(
            messages=[{"to": DEST, "content": {"n": 1}, "key": "k", "sender": None}],
            app2app_conn_id="org1",
            timeout=12,
        ),
    ],
)
def test_trigger_round_trips_through_json(trigger):
    rebuilt = rebuild(trigger)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == trigger.serialize()


def test_delivery_trigger_serialises_to_the_exact_kwargs():
    trigger = App2AppDeliveryTrigger(messages=[{"to": DEST, "content": "hi"}], timeout=5)
    assert trigger.serialize() == (
        "airflow_provider_app2app.triggers.app2app.App2AppDeliveryTrigger",
        {
            "messages": [{"to": DEST, "content": "hi"}],
            "app2app_conn_id": "app2app_default",
            "timeout": 5.0,
        },
    )


def test_shared_stream_key_is_connection_and_destination_where_airflow_has_shared_streams():
    trigger = App2AppMessageTrigger(destination=DEST, app2app_conn_id="org2")
    expected = ("app2app", "org2", DEST) if SHARED_STREAMS_AVAILABLE else None
    assert trigger.shared_stream_key() == expected
    alone = App2AppMessageTrigger(destination=DEST, use_shared_stream=False)
    assert alone.shared_stream_key() is None


def test_bad_filter_is_refused_when_the_trigger_is_built():
    with pytest.raises(FilterError, match="does not compile"):
        App2AppMessageTrigger(destination=DEST, match={"key": "(", "key_match": "regex"})


def test_bad_content_format_names_the_choices():
    with pytest.raises(ValueError, match="text, json, base64"):
        App2AppMessageTrigger(destination=DEST, content_format="xml")
