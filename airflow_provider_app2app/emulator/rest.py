"""The HTTP endpoints next to the socket, on the same port.

* ``GET /api/v1/addressbook`` (Basic auth, like the socket): every destination of the
  environment grouped by membership, in the shape of PROTOCOL.md §6:
  ``[{"membership": "/<id>", "destinations": [{"uri": ..., "name": ...}]}]``.
* ``GET /healthz``: ``{"status": "ok"}`` while the emulator serves.
* ``GET /emulator/status`` (no auth, it holds no secrets): open connections with their
  protocol generation and username, subscriptions and the active one per destination,
  and per destination the log length and the committed and delivered positions::

    {"version", "pid", "endpoint", "started_at",
     "store": "sqlite" | "memory",
     "settings": {"delivery_event", "payload_format", "envelope_encoding",
                  "max_content_bytes"},
     "connections": [{"id", "generation": "EIO3" | "EIO4", "username", "membership",
                      "connected_at", "tuning": {"auto_commit", "read_ahead",
                      "batch_size", "batch_timeout"},
                      "subscriptions": [uri], "active_for": [uri],
                      "outstanding", "produced", "batches", "delivered", "commits"}],
     "destinations": [{"uri", "name", "membership", "kaleido_managed",
                       "log_length", "committed", "committed_durable", "delivered",
                       "active": connection id | null, "standbys": [connection id]}]}

  Positions count messages: ``committed`` is what consumers committed (the
  ``read_ahead`` window and redelivery use it), ``committed_durable`` what the store
  has made durable (it follows within milliseconds), ``delivered`` how far the active
  subscriber has been sent (back to ``committed`` when none is active).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from airflow_provider_app2app.emulator.auth import AuthenticationError, authenticate
from airflow_provider_app2app.emulator.broker import Broker

ADDRESSBOOK_PATH = "/api/v1/addressbook"
HEALTH_PATH = "/healthz"
STATUS_PATH = "/emulator/status"


def addressbook(broker: Broker) -> list[dict[str, Any]]:
    """The address book document: destinations grouped by membership."""
    environment = broker.environment
    return [
        {
            "membership": f"/{membership.id}",
            "destinations": [
                {"uri": d.uri, "name": d.name} for d in environment.destinations_of(membership.id)
            ],
        }
        for membership in environment.memberships
    ]


class RestEndpoints:
    """The REST routes.

    :param broker: the service whose state is reported.
    :param server_info: returns the server-level fields of the status document
        (endpoint, pid, version, ...), merged in front of the broker's.
    """

    def __init__(self, broker: Broker, server_info: Callable[[], Mapping[str, Any]]) -> None:
        self.broker = broker
        self.server_info = server_info

    def attach(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        app.router.add_get(ADDRESSBOOK_PATH, self.get_addressbook)
        app.router.add_get(HEALTH_PATH, self.get_health)
        app.router.add_get(STATUS_PATH, self.get_status)

    async def get_addressbook(self, request: web.Request) -> web.Response:
        """``GET /api/v1/addressbook``, Basic auth with or without the ``Basic`` prefix."""
        try:
            authenticate(self.broker.environment, request.headers.get("Authorization"))
        except AuthenticationError as exc:
            return web.json_response(
                {"error": str(exc)},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="App2App emulator"'},
            )
        return web.json_response(addressbook(self.broker))

    async def get_health(self, request: web.Request) -> web.Response:
        """``GET /healthz``."""
        return web.json_response({"status": "ok"})

    async def get_status(self, request: web.Request) -> web.Response:
        """``GET /emulator/status``."""
        return web.json_response({**self.server_info(), **self.broker.status()})
