"""The sensor and the deferrable operator defer with the right trigger, method and
timeout, and turn trigger events into XCom values or clear failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_provider_app2app.operators.app2app import (
    App2AppProduceError,
    App2AppProduceOperator,
)
from airflow_provider_app2app.sensors.app2app import App2AppMessageError, App2AppMessageSensor
from airflow_provider_app2app.triggers.app2app import (
    App2AppDeliveryTrigger,
    App2AppMessageTrigger,
)

DEST = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-managed"
MESSAGE = {
    "key": "k1",
    "sender": "kld://a",
    "recipient": DEST,
    "content": "hi",
    "content_encoding": "text",
    "timestamp": 1,
    "signature_status": "unsigned",
    "encrypted": False,
}


def sensor(**kwargs):
    return App2AppMessageSensor(task_id="wait", destination=DEST, key="k1", timeout=90, **kwargs)


def test_sensor_always_defers_with_its_trigger_and_timeout():
    with pytest.raises(TaskDeferred) as deferred:
        sensor(sender="kld://a").execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, App2AppMessageTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=90)
    assert trigger.destination == DEST
    assert trigger.match["key"] == "k1"
    assert trigger.match["sender"] == "kld://a"
    assert trigger.deadline is not None


def test_sensor_returns_the_matched_message():
    assert sensor().execute_complete({}, {"status": "success", "message": MESSAGE}) == MESSAGE


def test_sensor_error_event_fails_with_the_reason():
    with pytest.raises(App2AppMessageError, match="bad credentials"):
        sensor().execute_complete({}, {"status": "error", "message": "bad credentials"})


def test_sensor_timeout_event_raises_sensor_timeout():
    with pytest.raises(AirflowSensorTimeout, match="in time"):
        sensor().execute_complete({}, {"status": "timeout", "message": "nothing in time"})


def test_sensor_with_a_bad_regex_fails_at_parse_time():
    with pytest.raises(ValueError, match="does not compile"):
        App2AppMessageSensor(task_id="s", destination=DEST, key="(", key_match="regex")


def test_operator_needs_a_message():
    with pytest.raises(ValueError, match="no message to send"):
        App2AppProduceOperator(task_id="send")
    with pytest.raises(ValueError, match="not both"):
        App2AppProduceOperator(task_id="send", to=DEST, content="x", messages=[])


def test_deferrable_operator_hands_the_messages_to_the_delivery_trigger():
    operator = App2AppProduceOperator(
        task_id="send",
        to=DEST,
        content=b"\x00\x01",
        key="k",
        deferrable=True,
        delivery_timeout=7,
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, App2AppDeliveryTrigger)
    assert trigger.timeout == 7
    assert trigger.messages == [
        {"to": DEST, "content": {"__app2app_base64__": "AAE="}, "key": "k", "sender": None}
    ]


def test_operator_resumes_with_the_reports_or_fails_with_the_reason():
    operator = App2AppProduceOperator(task_id="send", to=DEST, content="x", deferrable=True)
    reports = [{"key": "k", "timestamp": 5, "recipient": DEST}]
    assert operator.execute_complete({}, {"status": "success", "reports": reports}) == reports
    with pytest.raises(App2AppProduceError, match="refused"):
        operator.execute_complete({}, {"status": "error", "message": "refused"})


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([{"to": DEST}], "has no content"),
        ([{"content": "x"}], "needs 'to'"),
        ([{"to": DEST, "content": "x", "colour": 1}], "unknown field(s) colour"),
        (["text"], "not an object"),
    ],
)
def test_bad_message_list_is_refused_with_the_field(messages, fragment):
    operator = App2AppProduceOperator(task_id="send", messages=messages, deferrable=True)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        operator.execute(context={})
