"""The App2App hook: an Airflow connection of type ``app2app`` as App2App clients.

.. seealso:: the README's "Connection" section for every field, in the form, as JSON
   and as a URI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_app2app.hooks.produce_requests import decode_request

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_app2app.client import App2AppClient, AsyncApp2AppClient
    from airflow_provider_app2app.client.settings import ClientSettings
    from airflow_provider_app2app.client.tracking import ProduceReceipt
    from airflow_provider_app2app.hooks.connection_settings import ConnectionFields

log = logging.getLogger(__name__)


def _fields(conn: Connection) -> ConnectionFields:
    from airflow_provider_app2app.hooks.connection_settings import ConnectionFields

    return ConnectionFields(
        conn_id=conn.conn_id,
        host=conn.host,
        login=conn.login,
        password=conn.password,
        port=conn.port,
        schema=conn.schema,
        extra=conn.extra,
    )


def receipts_to_xcom(receipts: Iterable[ProduceReceipt]) -> list[dict[str, Any]]:
    """Produce receipts as the JSON value operators return: ``{"key", "timestamp",
    "recipient"}`` per message; ``timestamp`` is ``None`` without a delivery report."""
    return [
        {
            "key": receipt.key,
            "timestamp": receipt.report.timestamp_ms if receipt.report is not None else None,
            "recipient": receipt.recipient,
        }
        for receipt in receipts
    ]


class App2AppHook(BaseHook):
    """Talk to Kaleido App2App with the credentials of an Airflow connection.

    The connection (type ``app2app``): host = the endpoint as the console shows it
    (``wss://<host>/api/v1``), login and password = an app credential of one
    membership, extras = the connection form's fields (default destination, tuning,
    protocol generation, TLS, the destination's key and certificate, peer
    certificates). Every mistake in them raises one error naming the field.

    :param app2app_conn_id: ID of the ``app2app`` connection to use.
    """

    conn_name_attr = "app2app_conn_id"
    default_conn_name = "app2app_default"
    conn_type = "app2app"
    hook_name = "Kaleido App2App"

    def __init__(self, app2app_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app2app_conn_id = app2app_conn_id

    # ---------------------------------------------------------------- settings

    def get_client_settings(self, **overrides: Any) -> ClientSettings:
        """Client settings from the connection (blocking: reads the connection).

        :param overrides: settings that win over the connection's, e.g. ``tuning``.
        """
        from airflow_provider_app2app.hooks.connection_settings import settings_from_fields

        return settings_from_fields(_fields(self.get_connection(self.app2app_conn_id)), **overrides)

    async def aget_client_settings(self, **overrides: Any) -> ClientSettings:
        """Client settings from the connection, fetched without blocking the event loop."""
        from airflow_provider_app2app.hooks.connection_settings import settings_from_fields

        conn = await self.aget_connection(self.app2app_conn_id)
        return settings_from_fields(_fields(conn), **overrides)

    def get_conn(self) -> App2AppClient:
        """A blocking client (not yet connected; use it as a context manager)."""
        from airflow_provider_app2app.client import App2AppClient

        return App2AppClient(self.get_client_settings())

    def get_client(self, **overrides: Any) -> App2AppClient:
        """A blocking client with ``overrides`` applied to the connection's settings."""
        from airflow_provider_app2app.client import App2AppClient

        return App2AppClient(self.get_client_settings(**overrides))

    async def aget_client(self, **overrides: Any) -> AsyncApp2AppClient:
        """An asyncio client (not yet connected) for triggers."""
        from airflow_provider_app2app.client import AsyncApp2AppClient

        return AsyncApp2AppClient(await self.aget_client_settings(**overrides))

    def default_destination(self) -> str | None:
        """The connection's default destination, if it has one."""
        return self.get_client_settings().default_sender

    # ---------------------------------------------------------------- actions

    def produce(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        wait_for_delivery: bool = True,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Send messages and, by default, wait for their delivery reports.

        :param messages: mappings with ``to``, ``content`` and optional ``key`` and
            ``sender``.
        :param wait_for_delivery: wait until the service durably accepted each message.
        :param timeout: seconds to wait for the acknowledgements and reports.
        :returns: per message ``{"key", "timestamp", "recipient"}``; ``timestamp`` is
            ``None`` when not waiting for delivery.
        """
        requests = [decode_request(m) for m in messages]
        with self.get_client() as client:
            receipts = client.produce_many(
                requests, wait_for_delivery=wait_for_delivery, timeout=timeout
            )
        return receipts_to_xcom(receipts)

    def test_connection(self) -> tuple[bool, str]:
        """Connect, authenticate and read the address book; never raises.

        :returns: ``(True, summary)`` or ``(False, the reason with the fix)``.
        """
        from airflow_provider_app2app.client.addressbook import read_address_book
        from airflow_provider_app2app.protocol.errors import App2AppError

        try:
            settings = self.get_client_settings()
            from airflow_provider_app2app.client import App2AppClient

            with App2AppClient(settings) as client:
                generation = client.generation
            book = read_address_book(settings)
        except App2AppError as exc:
            return False, str(exc)
        count = sum(len(entry.get("destinations", [])) for entry in book)
        return (
            True,
            f"Connected to {settings.parsed_endpoint.console_url} as {settings.username} "
            f"({generation} Socket.IO); the address book lists {count} destination(s) in "
            f"{len(book)} membership(s).",
        )
