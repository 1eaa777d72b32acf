"""An ``app2app`` connection becomes client settings, and every bad field is named."""

from __future__ import annotations

import json

import pytest

from airflow_provider_app2app.hooks.connection_settings import (
    ConnectionConfigurationError,
    ConnectionFields,
    endpoint_from_fields,
    settings_from_fields,
)
from airflow_provider_app2app.protocol.crypto import generate_identity

ORG1_EXTERNAL = "kld://app2app/m/org1/e/env1/s/svc1/d/org1-external"
PARTNER = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-external"
KEY_PEM, CERT_PEM = generate_identity("org1-external")
_, PEER_PEM = generate_identity("org2-external")


def fields(**kwargs):
    base = {
        "conn_id": "app2app_default",
        "host": "wss://tenant.example.test/api/v1",
        "login": "u0user",
        "password": "s3cret-password",
    }
    base.update(kwargs)
    return ConnectionFields(**base)


def test_console_endpoint_and_credential_become_settings():
    settings = settings_from_fields(fields())
    assert settings.parsed_endpoint.base_url == "https://tenant.example.test"
    assert settings.username == "u0user"
    assert settings.password == "s3cret-password"
    assert "s3cret" not in repr(settings)


def test_every_form_field_is_applied():
    extra = {
        "default_destination": ORG1_EXTERNAL,
        "read_ahead": "25",
        "batch_size": 5,
        "auto_commit": "false",
        "socketio_version": "legacy",
        "payload_dialect": "documented",
        "verify_tls": "false",
        "private_key": KEY_PEM,
        "certificate": CERT_PEM,
        "peer_certificates": json.dumps({PARTNER: PEER_PEM}),
    }
    settings = settings_from_fields(fields(extra=json.dumps(extra)))
    assert settings.tuning_parameters.read_ahead == 25
    assert settings.tuning_parameters.batch_size == 5
    assert settings.tuning_parameters.auto_commit is False
    assert settings.socketio_version == "legacy"
    assert settings.payload_dialect == "documented"
    assert settings.verify_tls is False
    assert settings.default_sender == ORG1_EXTERNAL
    assert settings.identity_for(ORG1_EXTERNAL) is not None
    assert settings.certificate_for(PARTNER) is not None


def test_prefixed_extras_from_older_forms_are_accepted():
    settings = settings_from_fields(fields(extra={"extra__app2app__read_ahead": 3}))
    assert settings.tuning_parameters.read_ahead == 3


def test_overrides_win_over_the_connection():
    settings = settings_from_fields(
        fields(extra={"read_ahead": 3}), tuning={"auto_commit": False, "read_ahead": 50}
    )
    assert settings.tuning_parameters.read_ahead == 50


@pytest.mark.parametrize(
    ("host", "port", "schema", "extra", "expected"),
    [
        ("127.0.0.1", 8765, "api/v1", {}, "ws://127.0.0.1:8765/api/v1"),
        ("localhost", 8765, None, {}, "ws://localhost:8765/api/v1"),
        ("tenant.example.test", None, None, {}, "wss://tenant.example.test/api/v1"),
        (
            "tenant.example.test",
            8443,
            "",
            {"secure": "false"},
            "ws://tenant.example.test:8443/api/v1",
        ),
        ("127.0.0.1", 9000, None, {"secure": True}, "wss://127.0.0.1:9000/api/v1"),
        ("wss://t.example.test/api/v1", 1234, "ignored", {}, "wss://t.example.test/api/v1"),
    ],
)
def test_uri_form_bare_host_gets_a_scheme(host, port, schema, extra, expected):
    conn = fields(host=host, port=port, schema=schema, extra=extra)
    assert settings_from_fields(conn).parsed_endpoint.console_url == expected


def test_endpoint_of_a_full_url_host_is_kept_as_is():
    assert endpoint_from_fields(fields(host="ws://h:1/api/v1")) == "ws://h:1/api/v1"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"host": ""}, "has no host; set it to the endpoint"),
        ({"login": None}, "has no login"),
        ({"password": ""}, "has no password"),
        ({"extra": "{not json"}, "extras are not valid JSON"),
        ({"extra": "[1, 2]"}, "must be a JSON object"),
        ({"extra": {"colour": "red"}}, "unknown extra field(s) colour"),
        ({"extra": {"read_ahead": "lots"}}, "read_ahead='lots'"),
        ({"extra": {"verify_tls": "maybe"}}, "verify_tls='maybe' is not a boolean"),
        ({"extra": {"socketio_version": "v9"}}, "socketio_version='v9'"),
        ({"extra": {"private_key": KEY_PEM}}, "set certificate as well"),
        (
            {
                "extra": {
                    "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n",
                    "certificate": CERT_PEM,
                }
            },
            "paste the complete PEM",
        ),
        ({"extra": {"peer_certificates": "{oops"}}, "peer_certificates is not valid JSON"),
        ({"extra": {"peer_certificates": {PARTNER: 5}}}, "must map each sender"),
        (
            {"extra": {"peer_certificates": {PARTNER: "not a pem"}}},
            f"peer certificate of {PARTNER}",
        ),
        ({"host": "ftp://x/api/v1"}, "must start with wss://"),
    ],
)
def test_bad_connection_field_is_named_with_the_fix(kwargs, fragment):
    with pytest.raises(ConnectionConfigurationError) as info:
        settings_from_fields(fields(**kwargs))
    message = str(info.value)
    assert fragment in message
    assert "app2app_default" in message
    assert "s3cret-password" not in message
    assert KEY_PEM.splitlines()[1] not in message  # no key material
    assert "AAAA" not in message
