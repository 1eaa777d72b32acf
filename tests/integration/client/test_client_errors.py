"""Every error a user can cause, as a typed exception whose message names the fix.

Promises checked, for both clients and both generations: wrong password
(AuthenticationError naming the user, never the password); a closed port and an
unresolvable host (EndpointUnreachableError); wss:// against a plain port (TlsError);
a server that never answers (App2AppTimeoutError); a late delivery report
(App2AppTimeoutError); destinations of another membership for produce and subscribe
(ServiceError with the service's text); envelopes without or with the wrong key
(DecryptionError); a signature that does not verify (InvalidSignatureError); the
service's ``exception`` events reaching the callback and the log; and no secret in
any log line, with the transport loggers at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from airflow_provider_app2app.client import (
    App2AppClient,
    App2AppTimeoutError,
    AsyncApp2AppClient,
    AuthenticationError,
    ClientSettings,
    DecryptionError,
    EndpointUnreachableError,
    InvalidSignatureError,
    ServiceError,
    TlsError,
)
from airflow_provider_app2app.client.transport import TRANSPORT_LOGGER
from tests.integration.client.helpers import async_client, sync_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FLAVOURS = ["sync", "async"]


async def connect_error(flavour: str, settings: ClientSettings) -> BaseException:
    try:
        if flavour == "sync":
            with App2AppClient(settings):
                pass
        else:
            async with AsyncApp2AppClient(settings):
                pass
    except Exception as exc:
        return exc
    raise AssertionError("connecting succeeded")


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_wrong_password_names_the_user_never_the_password(tenant, generation, flavour):
    settings = tenant.settings("org1", generation, password="definitely-wrong-pw")
    error = await connect_error(flavour, settings)
    assert isinstance(error, AuthenticationError)
    assert error.username == "org1-app" and "'org1-app'" in str(error)
    assert "definitely-wrong-pw" not in str(error)
    assert "password" in str(error)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("endpoint", "phrase"),
    [
        ("ws://127.0.0.1:{closed}/api/v1", "Nothing accepts"),
        ("ws://app2app.invalid/api/v1", "resolved"),
    ],
    ids=["closed-port", "unknown-host"],
)
async def test_unreachable_endpoint_says_so(generation, flavour, endpoint, phrase, closed_port):
    settings = ClientSettings(
        endpoint=endpoint.format(closed=closed_port),
        username="u",
        password="p",
        socketio_version=generation,
        connect_timeout=5,
    )
    error = await connect_error(flavour, settings)
    assert isinstance(error, EndpointUnreachableError)
    assert phrase in str(error)


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_tls_against_a_plain_port_is_a_tls_error(tenant, generation, flavour):
    endpoint = tenant.emulator.endpoint.replace("ws://", "wss://")
    settings = tenant.settings("org1", generation, endpoint=endpoint)
    error = await connect_error(flavour, settings)
    assert isinstance(error, TlsError)
    assert "ws://" in str(error)


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_server_that_never_answers_times_out(generation, flavour):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = ClientSettings(
            endpoint=f"ws://127.0.0.1:{port}/api/v1",
            username="u",
            password="p",
            socketio_version=generation,
            connect_timeout=0.5,
        )
        error = await connect_error(flavour, settings)
    assert isinstance(error, App2AppTimeoutError) and isinstance(error, TimeoutError)
    assert "connect_timeout" in str(error)


async def test_slow_acknowledgement_and_missing_reports_time_out(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    batching = {"batch_size": 50, "batch_timeout": 1500}  # the service acks when sealed
    settings = tenant.settings("org1", generation, default_sender=source, tuning=batching)
    async with async_client(settings) as sender:
        with pytest.raises(App2AppTimeoutError) as caught:
            await sender.produce(target, "batched", key="slow", timeout=0.2)
        assert "operation_timeout" in str(caught.value)
        with pytest.raises(App2AppTimeoutError) as caught:
            await sender.wait_for_delivery(5, timeout=0.2)
        assert "delivery reports" in str(caught.value)


def test_producing_from_another_membership_is_a_service_error(tenant, generation):
    foreign, target = tenant.managed("org2"), tenant.managed("org2")
    with (
        sync_client(tenant.settings("org1", generation)) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.produce(target, "x", key="k", sender=foreign)
    error = caught.value
    assert error.operation == "produce" and "org2" in error.service_text
    assert error.service_text in str(error) and "'org1-app'" in str(error)


async def test_subscribing_to_another_membership_is_a_service_error(tenant, generation):
    foreign = tenant.managed("org2")
    async with async_client(tenant.settings("org1", generation)) as client:
        with pytest.raises(ServiceError) as caught:
            await client.subscribe([foreign])
        assert client.subscriptions == []
    assert caught.value.operation == "subscribe" and foreign in caught.value.service_text


def test_unsigned_message_from_an_external_sender_is_refused(tenant, generation):
    source, _ = tenant.external("org1")
    with (
        sync_client(tenant.settings("org1", generation)) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.produce(tenant.managed("org2"), "x", sender=source)
    assert "private key" in str(caught.value)


@pytest.mark.parametrize("configured", ["no-key", "wrong-key"])
def test_undecryptable_envelope_is_a_decryption_error_and_can_be_skipped(
    tenant, generation, configured
):
    source, source_identity = tenant.external("org1")
    target, _ = tenant.external("org2")
    _, other_identity = tenant.external("org2")
    receiver_fields = {"tuning": {"auto_commit": False, "read_ahead": 5}}
    if configured == "wrong-key":
        receiver_fields["identities"] = {target: other_identity}
    sender_settings = tenant.settings("org1", generation, identities={source: source_identity})
    with (
        sync_client(tenant.settings("org2", generation, **receiver_fields)) as receiver,
        sync_client(sender_settings) as sender,
    ):
        receiver.subscribe(target)
        sender.produce(target, "sealed", key="sealed-1", sender=source)
        with pytest.raises(DecryptionError) as caught:
            receiver.receive(timeout=10)
        assert caught.value.key == "sealed-1"
        assert "private key" in str(caught.value)
        assert receiver.commit() == 1


async def test_signature_that_does_not_verify_is_refused_unless_allowed(tenant, generation):
    source, source_identity = tenant.external("org1")
    target, target_identity = tenant.external("org2")
    _, impostor = tenant.external("org1")
    strict = tenant.settings(
        "org2",
        generation,
        identities={target: target_identity},
        peer_certificates={source: impostor.certificate},
    )
    sender_settings = tenant.settings("org1", generation, identities={source: source_identity})
    async with async_client(strict) as receiver, async_client(sender_settings) as sender:
        await receiver.subscribe(target)
        await sender.produce(target, "hello", key="forged?", sender=source)
        with pytest.raises(InvalidSignatureError) as caught:
            await receiver.receive(timeout=10)
    assert caught.value.sender == source and "allow_invalid_signatures" in str(caught.value)


def test_no_secret_reaches_any_log_even_at_debug(tenant, generation, caplog):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    _, password = tenant.emulator.credential("org1")
    previous = TRANSPORT_LOGGER.level
    TRANSPORT_LOGGER.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            with sync_client(tenant.settings("org1", generation, default_sender=source)) as client:
                client.produce(target, "x", key="k")
            with pytest.raises(AuthenticationError):
                App2AppClient(tenant.settings("org1", generation, password="wrong-one")).connect()
    finally:
        TRANSPORT_LOGGER.setLevel(previous)
    assert "Sending packet" in caplog.text  # the transport really logged at DEBUG/INFO
    for secret in (password, "wrong-one", "Authorization", "Basic "):
        assert secret not in caplog.text


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_service_exception_events_reach_the_callback_and_the_log(
    tenant, generation, flavour, caplog
):
    seen: list[object] = []
    settings = tenant.settings("org2", generation, tuning={"auto_commit": False})
    caplog.set_level(logging.WARNING, "airflow_provider_app2app.client")
    # A commit with nothing outstanding makes the service send an 'exception' event;
    # the client itself never does that, so the test emits one on the raw transport.
    if flavour == "sync":
        with sync_client(settings, on_exception=seen.append) as client:
            client._transport.emit("commit", ())
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                time.sleep(0.02)
    else:
        async with async_client(settings, on_exception=seen.append) as client:
            await client._transport.emit("commit", ())
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
    assert seen and "commit" in str(seen[0])
    assert "exception" in caplog.text and "commit" in caplog.text
