"""Both clients' behaviour over a fake transport: the shared vocabulary, end to end.

Promises checked (for the blocking and the asyncio client alike): produce waits
for the ack and raises the service's text; payload dialects and the always-present
key argument; automatic signing; delivery-report waits by receipt, key and count;
ordered receive with explicit commits; re-subscription and commit reset after a
reconnect; fatal errors during reconnect; ``exception`` events; negotiation
fallback and pinning; no secret in any log line.
"""

from __future__ import annotations

import logging

import pytest

from airflow_provider_app2app.client import (
    App2AppTimeoutError,
    AuthenticationError,
    BackoffPolicy,
    ClientClosedError,
    DeliveryUnconfirmedError,
    ProduceRequest,
    ProtocolMismatchError,
    ServiceError,
)
from airflow_provider_app2app.protocol.crypto import verify
from airflow_provider_app2app.protocol.messages import delivery_document
from tests.unit.client.fakes import (
    ME,
    MY_EXTERNAL,
    PEER,
    AsyncDriver,
    SyncDriver,
    identity,
    make_settings,
)

FAST = BackoffPolicy(initial=0.01, maximum=0.02)


@pytest.fixture(params=[SyncDriver, AsyncDriver], ids=["sync", "async"])
def drive(request, fake_transport):
    drivers = []

    def make(**settings_overrides):
        on_exception = settings_overrides.pop("on_exception", None)
        driver = request.param(
            make_settings(backoff=FAST, **settings_overrides), on_exception=on_exception
        )
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.finish()


def current(fake):
    return fake.instances[-1]


def deliver(transport, key, content=b"x", event="data"):
    transport.deliver(event, delivery_document(PEER, ME, content), key, 1)


def test_produce_sends_the_proven_payload_with_the_key_and_returns_the_receipt(
    drive, fake_transport
):
    client = drive()
    client.connect()
    receipt = client.produce(PEER, {"n": 1}, key="k1")
    (args,) = current(fake_transport).events("produce")
    assert args == ({"headers": {"from": ME, "to": PEER}, "content": '{"n":1}'}, "k1")
    assert receipt.state == "acknowledged" and receipt.ack_text == "OK."


def test_keyless_produce_still_sends_a_null_key(drive, fake_transport):
    client = drive(payload_dialect="documented")
    client.connect()
    client.produce(PEER, "text")
    (args,) = current(fake_transport).events("produce")
    assert args == ({"from": ME, "to": PEER, "content": "text"}, None)


def test_rejected_produce_raises_service_error_with_the_service_text(drive, fake_transport):
    fake_transport.acks["produce"] = lambda args: ("Sender belongs to membership org2",)
    client = drive()
    client.connect()
    with pytest.raises(ServiceError) as caught:
        client.produce(PEER, "x", key="k")
    assert caught.value.service_text == "Sender belongs to membership org2"
    assert caught.value.operation == "produce"
    assert "org1-app" in str(caught.value)


def test_externally_managed_sender_is_signed_automatically(drive, fake_transport):
    mine = identity("me-external")
    client = drive(identities={MY_EXTERNAL: mine})
    client.connect()
    client.produce(PEER, b"\xff\xfebinary", sender=MY_EXTERNAL)
    client.produce(PEER, "managed")
    (signed, _), (unsigned, _) = current(fake_transport).events("produce")
    verify(b"\xff\xfebinary", signed["headers"]["signature"], mine.certificate)
    assert signed["content"] == b"\xff\xfebinary"
    assert "signature" not in unsigned["headers"]


def test_wait_for_delivery_by_receipt_key_and_count(drive, fake_transport):
    client = drive()
    client.connect()
    first = client.produce(PEER, "a", key="a")
    second = client.produce(PEER, "b")
    transport = current(fake_transport)
    transport.deliver("delivery-report", {"key": None, "timestamp": 2})
    transport.deliver("delivery-report", '{"key": "a", "timestamp": 1}')
    reports = client.wait_for_delivery([first, "a", second], timeout=1)
    assert [r.key for r in reports] == ["a", "a", None]
    assert client.wait_for_delivery(2, timeout=1) == []
    assert client.wait_for_delivery(timeout=1) == []


def test_missing_delivery_report_times_out_naming_the_key(drive):
    client = drive()
    client.connect()
    client.produce(PEER, "a", key="slow")
    with pytest.raises(App2AppTimeoutError) as caught:
        client.wait_for_delivery(["slow"], timeout=0.05)
    assert "slow" in str(caught.value)
    with pytest.raises(App2AppTimeoutError):
        client.wait_for_delivery(1, timeout=0.05)


def test_messages_are_received_in_order_and_committed_one_by_one(drive, fake_transport):
    client = drive(tuning={"auto_commit": False, "read_ahead": 5})
    client.connect()
    client.subscribe([ME])
    transport = current(fake_transport)
    for key in ("a", "b", "c"):
        deliver(transport, key, event="message")
    got = [client.receive(timeout=1) for _ in range(3)]
    assert [m.key for m in got] == ["a", "b", "c"]
    assert [m.sequence for m in got] == [1, 2, 3]
    assert client.commit() == 1
    assert client.commit(got[2]) == 2
    assert client.commit() == 0
    assert len(transport.events("commit")) == 3


def test_auto_commit_never_sends_commit(drive, fake_transport):
    client = drive()
    client.connect()
    deliver(current(fake_transport), "a")
    assert client.commit(client.receive(timeout=1)) == 0
    assert current(fake_transport).events("commit") == []


def test_receive_times_out_with_a_typed_error(drive):
    client = drive()
    client.connect()
    with pytest.raises(App2AppTimeoutError):
        client.receive(timeout=0.02)


def test_reconnect_resubscribes_and_sends_no_commit_for_old_messages(drive, fake_transport):
    client = drive(tuning={"auto_commit": False, "read_ahead": 5})
    client.connect()
    client.subscribe([ME])
    first = current(fake_transport)
    deliver(first, "handed-out")
    deliver(first, "buffered")
    old = client.receive(timeout=1)
    receipt = client.produce(PEER, "unconfirmed", key="u")
    first.drop()
    client.settle(lambda: len(fake_transport.instances) == 2 and client.connected)
    second = current(fake_transport)
    assert second.events("subscribe") == [([ME],)]
    assert client.connection_number == 2
    assert client.commit(old) == 0
    assert second.events("commit") == [] and first.events("commit") == []
    with pytest.raises(DeliveryUnconfirmedError) as caught:
        client.wait_for_delivery([receipt], timeout=1)
    assert caught.value.keys == ["u"]
    deliver(second, "handed-out")
    again = client.receive(timeout=1)
    assert (again.key, again.connection, again.sequence) == ("handed-out", 2, 1)
    assert client.commit(again) == 1 and len(second.events("commit")) == 1


def test_auto_commit_keeps_buffered_messages_across_a_reconnect(drive, fake_transport):
    client = drive()
    client.connect()
    deliver(current(fake_transport), "kept")
    current(fake_transport).drop()
    client.settle(lambda: client.connected and len(fake_transport.instances) == 2)
    assert client.receive(timeout=1).key == "kept"


def test_refused_credentials_during_reconnect_stop_the_client(drive, fake_transport):
    client = drive()
    client.connect()
    fake_transport.connect_errors.append(
        AuthenticationError("refused user 'org1-app'", username="org1-app")
    )
    current(fake_transport).drop()
    with pytest.raises(AuthenticationError):
        client.receive(timeout=2)


def test_rejected_subscription_is_not_resubscribed(drive, fake_transport):
    fake_transport.acks["subscribe"] = lambda args: ("Destination belongs to org2",)
    client = drive()
    client.connect()
    with pytest.raises(ServiceError) as caught:
        client.subscribe(PEER)
    assert caught.value.operation == "subscribe"
    assert client.subscriptions == []


def test_exception_events_reach_the_callback_and_the_log(drive, fake_transport, caplog):
    seen = []
    client = drive(on_exception=seen.append)
    client.connect()
    with caplog.at_level(logging.WARNING, "airflow_provider_app2app.client"):
        current(fake_transport).deliver("exception", {"message": "delivery to x failed"})
    assert seen == [{"message": "delivery to x failed"}]
    assert "delivery to x failed" in caplog.text


def test_auto_falls_back_to_legacy_and_remembers_it(drive, fake_transport):
    fake_transport.connect_errors.append(ProtocolMismatchError("no OPEN packet"))
    client = drive()
    client.connect()
    assert [t.generation for t in fake_transport.instances] == ["modern", "legacy"]
    assert client.generation == "legacy"
    again = drive()
    again.connect()
    assert fake_transport.instances[-1].generation == "legacy"


def test_pinned_generation_mismatch_names_the_setting(drive, fake_transport):
    fake_transport.connect_errors.append(ProtocolMismatchError("HTTP 400"))
    client = drive(socketio_version="modern")
    with pytest.raises(ProtocolMismatchError) as caught:
        client.connect()
    assert "socketio_version" in str(caught.value) and "'legacy'" in str(caught.value)


def test_produce_many_keeps_at_most_max_in_flight(drive, fake_transport):
    in_flight = []
    peak = []

    def hold(args):
        in_flight.append(args)
        peak.append(len(in_flight))
        return None  # acknowledged later

    fake_transport.acks["produce"] = hold
    client = drive()
    client.connect()

    original_settle = client.client._settle if hasattr(client.client, "_settle") else None
    assert original_settle is not None
    transport = lambda: current(fake_transport)  # noqa: E731

    def release_all():
        for _, _, callback in transport().pending:
            callback(None, "OK.")
        transport().pending.clear()
        in_flight.clear()

    # acknowledge whatever is pending whenever the client waits
    import threading

    stop = threading.Event()
    if client.flavour == "sync":

        def pump():
            while not stop.is_set():
                with client.client._cond:
                    release_all()
                stop.wait(0.002)

        worker = threading.Thread(target=pump, daemon=True)
        worker.start()
    else:

        async def pump_async():
            import asyncio

            while not stop.is_set():
                release_all()
                await asyncio.sleep(0.001)

        task = client.loop.create_task(pump_async())
    receipts = client.produce_many(
        [ProduceRequest(PEER, f"m{i}", f"k{i}") for i in range(50)], max_in_flight=4
    )
    stop.set()
    if client.flavour == "sync":
        worker.join()
    else:
        client.loop.run_until_complete(task)
    assert len(receipts) == 50 and all(r.state == "acknowledged" for r in receipts)
    assert max(peak) <= 4
    assert [args[1] for args in transport().events("produce")] == [f"k{i}" for i in range(50)]


def test_using_a_client_before_connect_or_after_close_is_a_clear_error(drive):
    client = drive()
    with pytest.raises(ClientClosedError) as caught:
        client.produce(PEER, "x")
    assert "connect()" in str(caught.value)
    client.connect()
    client.close()
    with pytest.raises(ClientClosedError):
        client.receive(timeout=0.01)


def test_no_log_line_contains_the_password_or_authorization(drive, fake_transport, caplog):
    with caplog.at_level(logging.DEBUG):
        client = drive(tuning={"auto_commit": False})
        client.connect()
        client.subscribe(ME)
        client.produce(PEER, "x", key="k")
        deliver(current(fake_transport), "k")
        client.commit(client.receive(timeout=1))
        current(fake_transport).drop()
        client.settle(lambda: client.connected)
    assert "s3cret-pa55word" not in caplog.text
    assert "Authorization" not in caplog.text and "Basic " not in caplog.text


def test_unacknowledged_produce_times_out_and_fails_the_receipt(drive, fake_transport):
    fake_transport.acks["produce"] = lambda args: None  # never acknowledged
    client = drive()
    client.connect()
    with pytest.raises(App2AppTimeoutError) as caught:
        client.produce(PEER, "x", key="stuck", timeout=0.05)
    assert "operation_timeout" in str(caught.value)
    assert isinstance(caught.value, TimeoutError)


def test_connection_drop_while_waiting_for_an_ack_is_connection_lost(drive, fake_transport):
    from airflow_provider_app2app.client import ConnectionLostError

    def drop_instead_of_ack(args):
        fake_transport.instances[-1].drop()
        return None

    fake_transport.acks["produce"] = drop_instead_of_ack
    client = drive()
    client.connect()
    with pytest.raises(ConnectionLostError) as caught:
        client.produce(PEER, "x", key="k", timeout=2)
    assert "duplicates are possible" in str(caught.value)
