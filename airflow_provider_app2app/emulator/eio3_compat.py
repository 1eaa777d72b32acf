"""Make the Socket.IO 4.x server line (Engine.IO 3, ``socketio_v4``) work on current Python.

``python-socketio-v4`` is the last release line that serves Engine.IO 3 clients (every
public App2App client uses Socket.IO 2.x). Its asyncio server predates Python 3.11:

* :meth:`socketio_v4.asyncio_manager.AsyncManager.emit` hands *coroutines* to
  :func:`asyncio.wait`, which Python 3.11 refuses ("Passing coroutines is forbidden,
  use tasks explicitly"), so every server-side ``emit`` fails.
  :class:`FixedAsyncManager` gathers them instead.
* It has no catch-all handler: an event without a handler is acknowledged with no
  arguments at all. :class:`LegacyAsyncServer` routes such events to a ``"*"`` handler
  of the namespace, called as ``handler(event, sid, *args)`` like python-socketio 5's.

Nothing here patches the library globally; the fixes are subclasses used only by the
emulator.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio_v4
from socketio_v4.asyncio_manager import AsyncManager

CATCH_ALL = "*"
_RESERVED = frozenset({"connect", "disconnect"})


class FixedAsyncManager(AsyncManager):  # type: ignore[misc]
    """``socketio_v4``'s client manager with an ``emit`` that works on Python ≥ 3.11."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> None:
        """Emit to one client, a room, or the whole namespace (the original's contract).

        :param event: the event name.
        :param data: the argument, or a tuple of arguments.
        :param namespace: the namespace to emit in.
        :param room: a session ID or room name; ``None`` means every client.
        :param skip_sid: a session ID (or a list) not to send to.
        :param callback: called with the client's acknowledgement (single client only).
        """
        if namespace not in self.rooms or room not in self.rooms[namespace]:
            return
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        sends = []
        for sid in self.get_participants(namespace, room):
            if sid in skipped:
                continue
            ack_id = None
            if callback is not None:
                ack_id = self._generate_ack_id(sid, namespace, callback)
            sends.append(self.server._emit_internal(sid, event, data, namespace, ack_id))
        if sends:
            await asyncio.gather(*sends)


class LegacyAsyncServer(socketio_v4.AsyncServer):  # type: ignore[misc]
    """``socketio_v4.AsyncServer`` with :class:`FixedAsyncManager` and a catch-all event.

    Accepts the keyword arguments of ``socketio_v4.AsyncServer``; ``client_manager``
    defaults to a :class:`FixedAsyncManager`.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("client_manager", FixedAsyncManager())
        super().__init__(**kwargs)

    async def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        handlers = self.handlers.get(namespace, {})
        if event not in handlers and event not in _RESERVED and CATCH_ALL in handlers:
            return await handlers[CATCH_ALL](event, *args)
        return await super()._trigger_event(event, namespace, *args)
