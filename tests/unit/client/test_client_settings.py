"""Client settings validation and the reconnect backoff policy.

Promises checked: every unusable setting is refused before any connection with a
message naming the setting (and never the password); tuning merges endpoint query
and overrides; backoff delays grow exponentially, never exceed the cap, carry
jitter, and stop after ``max_attempts``.
"""

from __future__ import annotations

import pytest

from airflow_provider_app2app.client import (
    BackoffPolicy,
    ClientConfigurationError,
    ClientSettings,
)
from airflow_provider_app2app.protocol.endpoint import TuningParameters, parse_endpoint
from tests.unit.client.fakes import ENDPOINT, MY_EXTERNAL, PEER_EXTERNAL, identity, make_settings


def test_password_never_appears_in_repr():
    settings = make_settings()
    assert "s3cret-pa55word" not in repr(settings)
    assert "org1-app" in repr(settings)


def test_console_endpoint_becomes_base_url_and_namespace():
    endpoint = make_settings(endpoint="wss://app2app.example.com/api/v1").parsed_endpoint
    assert endpoint.base_url == "https://app2app.example.com"
    assert endpoint.namespace == "/api/v1"


def test_tuning_overrides_the_endpoint_query():
    settings = make_settings(
        endpoint=f"{ENDPOINT}?read_ahead=3&auto_commit=false", tuning={"read_ahead": 7}
    )
    assert settings.tuning_parameters == TuningParameters(auto_commit=False, read_ahead=7)
    assert settings.parsed_endpoint.query["read_ahead"] == "7"


def test_tuning_parameters_object_and_parsed_endpoint_are_accepted():
    settings = make_settings(
        endpoint=parse_endpoint(ENDPOINT), tuning=TuningParameters(auto_commit=False)
    )
    assert settings.tuning_parameters.auto_commit is False


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"endpoint": "ftp://host/api/v1"}, "wss://"),
        ({"username": ""}, "username"),
        ({"password": ""}, "password"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"operation_timeout": -1}, "operation_timeout"),
        ({"socketio_version": "v3"}, "socketio_version"),
        ({"payload_dialect": "flat"}, "payload_dialect"),
        ({"transports": ("carrier-pigeon",)}, "transports"),
        ({"tuning": {"read_ahaed": 2}}, "read_ahaed"),
        ({"tuning": {"read_ahead": 0}}, "read_ahead"),
        ({"identities": {MY_EXTERNAL: ("not a key", "not a cert")}}, MY_EXTERNAL),
        ({"peer_certificates": {PEER_EXTERNAL: "garbage"}}, PEER_EXTERNAL),
    ],
)
def test_unusable_setting_is_refused_with_a_message_naming_it(overrides, named):
    with pytest.raises(ClientConfigurationError) as caught:
        make_settings(**overrides)
    assert named in str(caught.value)
    assert "s3cret-pa55word" not in str(caught.value)


def test_identity_pairs_and_certificate_pems_are_loaded():
    mine = identity("me-external")
    key_pem, cert_pem = _pems(mine)
    settings = make_settings(
        identities={MY_EXTERNAL: (key_pem, cert_pem)},
        peer_certificates={PEER_EXTERNAL: cert_pem},
    )
    assert settings.identity_for(MY_EXTERNAL).certificate == mine.certificate
    assert settings.certificate_for(PEER_EXTERNAL) == mine.certificate
    assert settings.certificate_for(MY_EXTERNAL) == mine.certificate
    assert settings.identity_for("kld://other") is None


def test_single_identity_serves_every_destination_without_an_entry():
    default, specific = identity("default"), identity("specific")
    settings = make_settings(identity=default, identities={MY_EXTERNAL: specific})
    assert settings.identity_for(MY_EXTERNAL) is specific
    assert settings.identity_for("kld://any") is default


def _pems(ident):
    from cryptography.hazmat.primitives import serialization

    key = ident.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key.decode(), ident.certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_backoff_grows_exponentially_up_to_the_cap_without_jitter():
    policy = BackoffPolicy(initial=0.5, maximum=4, multiplier=2, jitter=0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_backoff_jitter_only_shortens_delays_within_the_fraction():
    policy = BackoffPolicy(initial=1, maximum=8, jitter=0.5)
    assert policy.delay(3, rng=lambda: 0.0) == 8
    assert policy.delay(3, rng=lambda: 0.999999) == pytest.approx(4, rel=1e-5)
    delays = [policy.delay(10) for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays)
    assert len(set(delays)) > 100


def test_backoff_stops_after_max_attempts_and_never_overflows():
    assert len(list(BackoffPolicy(max_attempts=3).delays())) == 3
    assert BackoffPolicy(maximum=30, jitter=0).delay(10_000) == 30


@pytest.mark.parametrize(
    "fields",
    [
        {"initial": 0},
        {"maximum": 0.1, "initial": 1},
        {"multiplier": 0.5},
        {"jitter": 2},
        {"max_attempts": 0},
    ],
)
def test_backoff_rejects_unusable_values(fields):
    with pytest.raises(ClientConfigurationError):
        BackoffPolicy(**fields)


def test_settings_object_and_keywords_are_exclusive():
    from airflow_provider_app2app.client import App2AppClient

    with pytest.raises(ClientConfigurationError):
        App2AppClient(make_settings(), username="x")
    assert isinstance(App2AppClient(**_fields()).settings, ClientSettings)


def _fields():
    return {"endpoint": ENDPOINT, "username": "u", "password": "p"}
