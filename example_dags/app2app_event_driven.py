r"""Event-driven scheduling: every order message that reaches org2 starts a DAG run.

An ``AssetWatcher`` with ``MessageQueueTrigger(scheme="app2app", ...)`` watches org2's
destination in the triggerer; each message whose key matches ``order-<number>`` becomes
an asset event whose payload is the message. Asset events queued between two scheduler
loops start one run together, so the task handles every triggering event.

Watchers and sensors on the same (connection, destination) compete for messages: the
filter here (``order-\d+``) deliberately leaves the request/reply example's keys
(``order-42-<run_id>``) to its sensor.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

ORDERS_DESTINATION = "kld://app2app/m/org2/e/local/s/app2app/d/org2-managed"

inbound_orders = Asset(
    "app2app://org2/inbound-orders",
    watchers=[
        AssetWatcher(
            name="app2app_inbound_orders",
            trigger=MessageQueueTrigger(
                scheme="app2app",
                app2app_conn_id="app2app_org2",
                destination=ORDERS_DESTINATION,
                match={"key": r"order-\d+", "key_match": "regex"},
                content_format="json",
            ),
        )
    ],
)

with DAG(
    dag_id="app2app_event_driven",
    schedule=[inbound_orders],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["app2app", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def process_order(**context):
        """Log each inbound message that started this run and return their keys."""
        keys = []
        for events in context["triggering_asset_events"].values():
            for event in events:
                message = event.extra.get("payload", event.extra)
                print(f"Order {message.get('key')} from {message.get('sender')}: {message}")
                keys.append(message.get("key"))
        return keys

    process_order()
