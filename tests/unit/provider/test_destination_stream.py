"""Commit bookkeeping of the shared subscription: only settled messages at the head are
committed, unclaimed ones are held for late waiters and expire with a warning, and a
claim's fate is decided by its claimer (DESIGN.md invariants 1, 2 and 4)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from airflow_provider_app2app.client.tracking import DeliveredMessage
from airflow_provider_app2app.protocol.matching import MessageFilter
from airflow_provider_app2app.triggers.destination_stream import (
    Broadcast,
    DestinationState,
    HeldLog,
    StreamSettings,
)

DEST = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-managed"
SENDER = "kld://app2app/m/org1/e/env1/s/svc1/d/org1-managed"


class FakeClient:
    """Records commits and produced messages; one connection."""

    connection_number = 1

    def __init__(self):
        self.commits: list[str | None] = []
        self.produced: list[tuple[str, bytes, str | None]] = []

    async def commit(self, message=None):
        self.commits.append(None if message is None else message.key)
        return 1

    async def produce(self, to, content, key=None, sender=None):
        self.produced.append((to, content, key))


_numbers = itertools.count(1)


def delivered(key: str) -> DeliveredMessage:
    return DeliveredMessage(
        key=key, sender=SENDER, recipient=DEST, content=key.encode(), connection=1
    )


def held_log(retention=60.0, dead_letter=None):
    client = FakeClient()
    settings = StreamSettings(DEST, retention, dead_letter, 100)
    return client, HeldLog(client, settings)


def broadcast_of(log: HeldLog, key: str) -> Broadcast:
    return Broadcast(log.append(delivered(key)), next(_numbers))


async def test_only_settled_messages_at_the_head_are_committed():
    client, log = held_log()
    state = DestinationState(asyncio.get_running_loop())
    first, second = broadcast_of(log, "a"), broadcast_of(log, "b")
    waiter_a = state.join(MessageFilter(key="a"))
    waiter_b = state.join(MessageFilter(key="b"))
    assert waiter_b.claim(second) and waiter_a.claim(first)

    log.settle(second, failed=0)
    assert await log.commit_ready() == 0  # "a" is not settled yet: "b" must wait
    log.settle(first, failed=0)
    assert await log.commit_ready() == 2
    assert client.commits == ["a", "b"]


async def test_a_message_is_claimed_by_one_waiter_only():
    _, log = held_log()
    state = DestinationState(asyncio.get_running_loop())
    shared = broadcast_of(log, "k")
    first = state.join(MessageFilter(key="k"))
    second = state.join(MessageFilter(key="k"))
    assert first.claim(shared)
    assert not second.claim(shared)


async def test_unclaimed_message_is_held_then_committed_and_dead_lettered_after_retention(caplog):
    client, log = held_log(retention=0.05, dead_letter="kld://dlq")
    broadcast_of(log, "nobody-waits")
    assert await log.commit_ready() == 0
    assert log.unclaimed()[0].message.key == "nobody-waits"
    await asyncio.sleep(0.06)
    assert await log.commit_ready() == 1
    assert client.commits == ["nobody-waits"]
    assert client.produced == [("kld://dlq", b"nobody-waits", "nobody-waits")]
    assert "No waiter claimed message 'nobody-waits'" in caplog.text
    assert SENDER in caplog.text


async def test_a_failure_of_another_subscriber_does_not_release_a_persisted_claim():
    client, log = held_log()
    state = DestinationState(asyncio.get_running_loop())
    message = broadcast_of(log, "k")
    waiter = state.join(MessageFilter(key="k"))
    waiter.claim(message)
    log.settle(message, failed=1)  # someone failed it; the claimer's fate decides
    assert await log.commit_ready() == 0
    state.on_leave = lambda w: log.claimer_left(w)
    state.leave(waiter, failed=False)  # Airflow ended the trigger after its event
    assert await log.commit_ready() == 1
    assert client.commits == ["k"]


async def test_a_claim_whose_event_failed_is_released_for_the_retried_waiter():
    client, log = held_log()
    state = DestinationState(asyncio.get_running_loop())
    message = broadcast_of(log, "k")
    waiter = state.join(MessageFilter(key="k"))
    waiter.claim(message)
    state.leave(waiter, failed=True)  # ack timeout: the event was never persisted
    log.settle(message, failed=1)
    assert await log.commit_ready() == 0
    assert client.commits == []
    retried = state.join(MessageFilter(key="k"))
    again = Broadcast(message.held, next(_numbers))
    assert retried.claim(again)
    log.settle(again, failed=0)
    assert await log.commit_ready() == 1


async def test_a_message_of_an_earlier_connection_is_dropped_not_committed():
    client, log = held_log()
    old = broadcast_of(log, "old")
    old.held.connection = 0  # delivered before a reconnect: the service redelivers it
    assert await log.commit_ready() == 0
    assert client.commits == []
    assert log.unclaimed() == []


@pytest.mark.parametrize("fate", [False, True])
async def test_leaving_decides_a_pending_verdict(fate):
    _client, log = held_log()
    state = DestinationState(asyncio.get_running_loop())
    message = broadcast_of(log, "k")
    waiter = state.join(MessageFilter(key="k"))
    waiter.claim(message)
    log.settle(message, failed=2)
    assert log.claimer_left(waiter) is False  # still there: nothing decided
    state.leave(waiter, failed=fate)
    assert log.claimer_left(waiter) is True
    assert await log.commit_ready() == (0 if fate else 1)
