"""An in-process stand-in for Airflow's triggerer around the real ``SharedStreamManager``.

It drives triggers exactly as ``TriggerRunner.run_trigger`` does on Airflow 3.3
(subscribe to the shared stream, iterate ``filter_shared_stream``, bind each event for
persistence, keep iterating until cancelled, unsubscribe, ``cleanup()``), and plays the
supervisor and the scheduler: it confirms events as persisted after ``persist_delay``
and ends a trigger once its event was persisted, like the scheduler resuming the task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import SharedStreamManager


@dataclass
class TriggerRecord:
    """What happened to one trigger."""

    trigger: BaseEventTrigger
    events: list[TriggerEvent] = field(default_factory=list)
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    persisted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class InProcessTriggerer:
    """Runs shared-stream triggers the way the 3.3 triggerer does.

    :param persist_delay: seconds between an event and its persist confirmation.
    :param ack_timeout: the manager's per-event ack timeout.
    """

    def __init__(self, persist_delay: float = 0.2, ack_timeout: float = 60.0) -> None:
        self.manager = SharedStreamManager(ack_timeout=ack_timeout)
        self.persist_delay = persist_delay
        self.records: dict[int, TriggerRecord] = {}
        self._pending: list[tuple[int, int | None]] = []
        self._persister: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessTriggerer:
        self._persister = asyncio.create_task(self._persist_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for record in self.records.values():
            if record.task is not None:
                record.task.cancel()
        await asyncio.gather(
            *(r.task for r in self.records.values() if r.task is not None),
            return_exceptions=True,
        )
        if self._persister is not None:
            self._persister.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._persister
        await self.manager.stop_all()

    def start(self, trigger_id: int, trigger: BaseEventTrigger) -> TriggerRecord:
        """Start running a trigger (like the triggerer picking it up)."""
        record = self.records[trigger_id] = TriggerRecord(trigger)
        record.task = asyncio.create_task(self._run(trigger_id, record))
        return record

    async def _run(self, trigger_id: int, record: TriggerRecord) -> None:
        trigger = record.trigger
        key: Hashable = trigger.shared_stream_key()
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        try:
            async for event in trigger.filter_shared_stream(stream):
                seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                record.events.append(event)
                record.fired.set()
                self._pending.append((trigger_id, seq))
        finally:
            await self.manager.unsubscribe(trigger_id, key)
            await trigger.cleanup()

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.persist_delay)
            batch, self._pending = self._pending, []
            self.manager.confirm_persisted([seq for _, seq in batch if seq is not None])
            for trigger_id, _ in batch:
                self.records[trigger_id].persisted.set()
            # The scheduler resumes the task a moment later and the trigger is ended.
            for trigger_id, _ in batch:
                asyncio.get_running_loop().call_later(self.persist_delay * 3, self._end, trigger_id)

    def _end(self, trigger_id: int) -> None:
        task = self.records[trigger_id].task
        if task is not None:
            task.cancel()

    def payloads(self) -> dict[int, Any]:
        """Trigger ID → payload of its first event."""
        return {i: r.events[0].payload for i, r in self.records.items() if r.events}
