"""Declarative filters decide which message a waiter claims, and survive serialisation."""

from __future__ import annotations

import json

import pytest

from airflow_provider_app2app.protocol.matching import FilterError, MessageFilter
from airflow_provider_app2app.protocol.messages import ReceivedMessage

ORG1 = "kld://app2app/m/org1/e/env1/s/svc1/d/org1-managed"
ORG2 = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-managed"


def message(key=None, sender=ORG1, content=b"{}"):
    return ReceivedMessage(key=key, sender=sender, recipient=ORG2, content=content)


def test_empty_filter_accepts_any_message():
    assert MessageFilter().matches(message())
    assert MessageFilter().matches(message(key="k"))


def test_exact_key_matches_only_that_key():
    wanted = MessageFilter(key="order-1")
    assert wanted.matches(message(key="order-1"))
    assert not wanted.matches(message(key="order-10"))
    assert not wanted.matches(message(key=None))


def test_glob_key_matches_the_pattern_across_the_whole_key():
    wanted = MessageFilter(key="order-*", key_match="glob")
    assert wanted.matches(message(key="order-17"))
    assert not wanted.matches(message(key="reorder-17"))


def test_regex_key_must_match_the_whole_key():
    wanted = MessageFilter(key=r"req-\d+", key_match="regex")
    assert wanted.matches(message(key="req-42"))
    assert not wanted.matches(message(key="req-42-extra"))


def test_sender_must_be_the_exact_uri():
    wanted = MessageFilter(sender=ORG1)
    assert wanted.matches(message(sender=ORG1))
    assert not wanted.matches(message(sender=ORG2))


@pytest.mark.parametrize(
    ("content", "field", "value", "expected"),
    [
        ({"order": {"id": 7}}, "order.id", 7, True),
        ({"order": {"id": 7}}, "order.id", "7", False),
        ({"items": [{"sku": "a"}, {"sku": "b"}]}, "items.1.sku", "b", True),
        ({"items": []}, "items.0.sku", None, False),
        ({"status": None}, "status", None, True),
        ({"other": 1}, "status", None, False),
    ],
)
def test_json_field_compares_the_value_at_the_dotted_path(content, field, value, expected):
    wanted = MessageFilter(json_field=field, json_value=value)
    assert wanted.matches(message(content=json.dumps(content).encode())) is expected


def test_json_field_on_non_json_content_does_not_match():
    assert not MessageFilter(json_field="a", json_value=1).matches(message(content=b"\xff"))


def test_all_criteria_must_hold():
    wanted = MessageFilter(key="k", sender=ORG1, json_field="ok", json_value=True)
    assert wanted.matches(message(key="k", content=b'{"ok": true}'))
    assert not wanted.matches(message(key="k", sender=ORG2, content=b'{"ok": true}'))


def test_filter_round_trips_through_json():
    wanted = MessageFilter(key="a*", key_match="glob", sender=ORG1, json_field="x", json_value=[1])
    data = json.loads(json.dumps(wanted.to_dict()))
    assert MessageFilter.from_dict(data) == wanted


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"key": "(", "key_match": "regex"}, "does not compile"),
        ({"key_match": "fuzzy"}, "use one of exact, glob, regex"),
        ({"json_field": "..."}, "dotted path"),
        ({"json_value": object()}, "json_value must be JSON"),
        ({"key": 5}, "must be a string"),
    ],
)
def test_bad_filter_definition_is_refused_with_the_fix(kwargs, fragment):
    with pytest.raises(FilterError, match=fragment):
        MessageFilter(**kwargs)


def test_unknown_filter_option_is_named():
    with pytest.raises(FilterError, match=r"Unknown filter option.*colour"):
        MessageFilter.from_dict({"colour": "red"})


def test_description_names_the_criteria():
    text = MessageFilter(key="k", sender=ORG1).describe()
    assert "'k'" in text and ORG1 in text
    assert MessageFilter().describe() == "any message"
