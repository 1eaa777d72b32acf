"""Consumer commit windows and at-least-once delivery across an emulator crash.

Promises checked: with ``auto_commit=false`` delivery stalls once ``read_ahead``
messages are uncommitted and resumes on ``commit()``; after the emulator is
SIGKILLed and restarted on the same data directory and port, both clients
reconnect, re-subscribe and lose nothing: acknowledged messages all arrive, a
handed-out but uncommitted message arrives again, and no commit is sent for a
message of the old connection (the service reports none as superfluous).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_app2app.client import (
    App2AppConnectionError,
    App2AppTimeoutError,
    ProduceRequest,
)
from tests.integration.client.helpers import Tenant, async_client, in_thread, sync_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WINDOW = {"auto_commit": False, "read_ahead": 2}


def test_read_ahead_window_stalls_until_commit_sync(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    with (
        sync_client(tenant.settings("org2", generation, tuning=WINDOW)) as consumer,
        sync_client(tenant.settings("org1", generation, default_sender=source)) as producer,
    ):
        consumer.subscribe(target)
        producer.produce_many([(target, f"m{i}", f"k{i}") for i in range(5)])
        first, second = consumer.receive(timeout=10), consumer.receive(timeout=10)
        with pytest.raises(App2AppTimeoutError):
            consumer.receive(timeout=0.5)
        assert consumer.commit() == 1
        third = consumer.receive(timeout=10)
        assert consumer.commit(third) == 2
        rest = [consumer.receive(timeout=10) for _ in range(2)]
        assert consumer.commit(rest[-1]) == 2
    assert [m.key for m in (first, second, third, *rest)] == [f"k{i}" for i in range(5)]
    assert tenant.emulator.wait_for_status(lambda s: _committed(s, target) == 5)


async def test_read_ahead_window_stalls_until_commit_async(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    async with (
        async_client(tenant.settings("org2", generation, tuning=WINDOW)) as consumer,
        async_client(tenant.settings("org1", generation, default_sender=source)) as producer,
    ):
        await consumer.subscribe(target)
        await producer.produce_many([ProduceRequest(target, "x", f"k{i}") for i in range(3)])
        await consumer.receive(timeout=10)
        await consumer.receive(timeout=10)
        with pytest.raises(App2AppTimeoutError):
            await consumer.receive(timeout=0.5)
        assert await consumer.commit() == 1
        assert (await consumer.receive(timeout=10)).key == "k2"


def _committed(status, uri):
    (dest,) = [d for d in status["destinations"] if d["uri"] == uri]
    return dest["committed"]


async def _produce_retrying(producer, target: str, key: str, deadline: float) -> None:
    while True:
        try:
            await producer.produce(target, f"body of {key}", key=key, timeout=5)
            return
        except (App2AppConnectionError, App2AppTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_nothing_is_lost_when_the_emulator_is_killed_mid_stream(
    emulators, generation, flavour, tmp_path
):
    name = f"crash-{generation}-{flavour}"
    emulator = emulators.start_private(name)
    restarted = None
    try:
        tenant = Tenant(emulator)
        source, target = tenant.managed("org1"), tenant.managed("org2")
        complaints: list[object] = []
        consumer_settings = tenant.settings(
            "org2", generation, tuning={"auto_commit": False, "read_ahead": 3}
        )
        producer_settings = tenant.settings("org1", generation, default_sender=source)
        keys = [f"k{i:02d}" for i in range(20)]
        deadline = time.monotonic() + 60

        if flavour == "async":
            consumer_cm = async_client(consumer_settings, on_exception=complaints.append)
            producer_cm = async_client(producer_settings)
        else:
            from airflow_provider_app2app.client import App2AppClient

            consumer_cm = _AsyncFacade(
                App2AppClient(consumer_settings, on_exception=complaints.append)
            )
            producer_cm = _AsyncFacade(App2AppClient(producer_settings))

        async with consumer_cm as consumer, producer_cm as producer:
            await consumer.subscribe(target)
            for key in keys[:10]:
                await _produce_retrying(producer, target, key, deadline)
            seen = [await consumer.receive(timeout=10) for _ in range(3)]  # window full
            assert await consumer.commit(seen[1]) == 2
            seen.append(await consumer.receive(timeout=10))
            assert await consumer.commit() == 1
            uncommitted = seen[3]  # k03 stays handed out, uncommitted; k04, k05 buffered

            port = emulator.port
            emulator.kill()
            restarted = emulators.start_private(name, port=port)

            for key in keys[10:]:
                await _produce_retrying(producer, target, key, deadline)
            assert await consumer.commit(uncommitted) == 0  # old connection: not sent
            while not set(keys) <= {m.key for m in seen}:
                message = await consumer.receive(timeout=max(1, deadline - time.monotonic()))
                seen.append(message)
                assert await consumer.commit(message) == 1
            assert consumer.connection_number >= 2
            assert consumer.subscriptions == [target]

        received = [m.key for m in seen]
        assert set(received) == set(keys)
        assert received.count(uncommitted.key) == 2  # at-least-once: redelivered
        assert [k for k in received if k > uncommitted.key] == sorted(
            k for k in received if k > uncommitted.key
        )
        assert not [c for c in complaints if "commit" in str(c)]
        assert restarted.wait_for_status(lambda s: _committed(s, target) == 20)
    finally:
        emulator.stop()
        if restarted is not None:
            restarted.stop()


class _AsyncFacade:
    """Drive a blocking client from the test's event loop, one thread call at a time."""

    def __init__(self, client) -> None:
        self._client = client

    async def __aenter__(self):
        await in_thread(self._client.connect)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await in_thread(self._client.close)

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        async def call(*args, **kwargs):
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: attribute(*args, **kwargs)
            )

        return call
