"""Event-driven scheduling from App2App: the ``app2app`` message-queue scheme.

Airflow's common-messaging provider finds this class through the provider's
``queues`` metadata and matches it by scheme, so
``MessageQueueTrigger(scheme="app2app", destination=..., app2app_conn_id=...)`` in an
``AssetWatcher`` runs :class:`~airflow_provider_app2app.triggers.app2app.App2AppWatcherTrigger`
with the remaining keyword arguments. Every message starts a DAG run; the message is
the asset event's payload.
"""

from __future__ import annotations

from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider

from airflow_provider_app2app.triggers.app2app import App2AppWatcherTrigger


class App2AppMessageQueueProvider(BaseMessageQueueProvider):
    """The ``app2app`` scheme: watch a destination for inbound messages."""

    scheme = "app2app"

    def trigger_class(self) -> type[App2AppWatcherTrigger]:
        """The watcher trigger; it takes ``destination`` and the filter options."""
        return App2AppWatcherTrigger
