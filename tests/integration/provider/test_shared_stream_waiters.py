"""Many sensors on one destination share one subscription: nothing lost, nothing stolen,
replies that arrive before their sensor are still delivered, and everything ends
committed (Airflow 3.3 shared-stream ack mode, through Airflow's real manager)."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from airflow_provider_app2app.client import App2AppClient
from airflow_provider_app2app.emulator.connections import airflow_connection_env
from airflow_provider_app2app.triggers.app2app import App2AppMessageTrigger
from airflow_provider_app2app.triggers.destination_stream import SHARED_STREAMS_AVAILABLE
from tests.support.emulator import EmulatorProcess

pytestmark = pytest.mark.skipif(
    not SHARED_STREAMS_AVAILABLE, reason="shared streams need Airflow >= 3.3"
)

WAITERS = 200
EARLY = 50


@pytest.fixture
def connections(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch):
    for name, value in airflow_connection_env(emulator.environment).items():
        monkeypatch.setenv(name, value)


def produce(emulator: EmulatorProcess, keys: list[str]) -> None:
    username, password = emulator.credential("org1")
    with App2AppClient(
        endpoint=emulator.endpoint,
        username=username,
        password=password,
        default_sender=emulator.uri("org1-managed"),
    ) as client:
        client.produce_many(
            [(emulator.uri("org2-managed"), json.dumps({"for": key}), key) for key in keys],
            wait_for_delivery=True,
        )


def subscribers_of(emulator: EmulatorProcess, uri: str) -> int:
    return sum(
        1
        for connection in emulator.status()["connections"]
        if uri in connection.get("subscriptions", [])
    )


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}.")
        await asyncio.sleep(0.1)


async def test_200_sensors_on_one_destination_each_get_their_own_reply(
    emulator: EmulatorProcess, connections
):
    from tests.support.triggerer import InProcessTriggerer

    destination = emulator.uri("org2-managed")
    keys = [f"reply-{n:03d}" for n in range(WAITERS)]
    rng = random.Random(20261204)
    early = set(rng.sample(keys, EARLY))
    late = [k for k in keys if k not in early]
    rng.shuffle(late)
    await asyncio.to_thread(produce, emulator, sorted(early, key=lambda _: rng.random()))

    async with InProcessTriggerer() as triggerer:
        order = list(range(WAITERS))
        rng.shuffle(order)
        for batch_start in range(0, WAITERS, 25):
            for index in order[batch_start : batch_start + 25]:
                triggerer.start(
                    index,
                    App2AppMessageTrigger(
                        destination=destination,
                        app2app_conn_id="app2app_org2",
                        match={"key": keys[index]},
                        content_format="json",
                        retention=120,
                    ),
                )
            await asyncio.sleep(0.05)
        await wait_until(lambda: subscribers_of(emulator, destination) == 1, 30, "the subscription")
        for start in range(0, len(late), 30):
            await asyncio.to_thread(produce, emulator, late[start : start + 30])
        await wait_until(
            lambda: all(r.fired.is_set() for r in triggerer.records.values()),
            120,
            "every waiter's event",
        )
        assert subscribers_of(emulator, destination) == 1
        payloads = triggerer.payloads()
        await wait_until(
            lambda: all(r.task is not None and r.task.done() for r in triggerer.records.values()),
            60,
            "every trigger to end",
        )

    assert len(payloads) == WAITERS
    for index, payload in payloads.items():
        assert payload["status"] == "success"
        assert payload["message"]["key"] == keys[index]
        assert payload["message"]["content"] == {"for": keys[index]}
    assert all(len(r.events) == 1 for r in triggerer.records.values())
    state = emulator.destination_status(destination)
    assert (state["log_length"], state["committed"]) == (WAITERS, WAITERS)
