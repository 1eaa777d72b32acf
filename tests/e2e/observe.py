"""What the end-to-end tests observe of the emulator while Airflow runs against it."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.emulator import EmulatorProcess

SUBSCRIBED = re.compile(r"Subscribed (?P<conn>\S+) to (?P<uri>\S+) \((?P<role>[^)]*)\)")


def subscriptions(lines: list[str]) -> list[dict[str, str]]:
    """The emulator's "Subscribed <connection> to <uri> (<role>)" log lines, parsed."""
    return [m.groupdict() for line in lines if (m := SUBSCRIBED.search(line))]


@dataclass
class StatusRecorder:
    """Polls ``/emulator/status`` in a thread; per destination, the most connections
    that were subscribed to it at one time (the active one plus standbys)."""

    emulator: EmulatorProcess
    interval: float = 0.1
    peak: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusRecorder:
        self._thread = threading.Thread(target=self._run, name="status-recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.emulator.status()
            except Exception:  # the emulator may be stopping; the test checks it
                status = {"destinations": []}
            for dest in status["destinations"]:
                count = (1 if dest.get("active") else 0) + len(dest.get("standbys") or [])
                self.peak[dest["name"]] = max(self.peak.get(dest["name"], 0), count)
            self.samples += 1
            self._stop.wait(self.interval)
