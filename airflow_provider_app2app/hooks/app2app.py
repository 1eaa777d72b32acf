"""The App2App hook: turns an Airflow connection of type ``app2app`` into client settings."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class App2AppHook(BaseHook):
    """Interact with Kaleido App2App through an Airflow connection.

    :param app2app_conn_id: ID of a connection of type ``app2app``: host = the endpoint
        as the console shows it (``wss://<host>/api/v1``), login and password = an app
        credential of one membership, extras = the fields of the connection form.
    """

    conn_name_attr = "app2app_conn_id"
    default_conn_name = "app2app_default"
    conn_type = "app2app"
    hook_name = "Kaleido App2App"

    def __init__(self, app2app_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app2app_conn_id = app2app_conn_id
