"""Two organisations exchange a request and a reply over App2App.

org1 sends a request to org2's destination with a key; org2's sensor receives it
and replies to the sender with the same key; org1's sensor receives the reply.
With the emulator's demo environment, the connections ``app2app_org1`` and
``app2app_org2`` come from ``environment.json`` (``make demo`` sets them up).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_app2app.operators.app2app import App2AppProduceOperator
from airflow_provider_app2app.sensors.app2app import App2AppMessageSensor

# Where org1 sends its request: org2's Kaleido-managed destination (Airflow Variable
# `app2app_request_destination` overrides the emulator demo environment's URI).
REQUEST_DESTINATION = (
    "{{ var.value.get('app2app_request_destination', "
    "'kld://app2app/m/org2/e/local/s/app2app/d/org2-managed') }}"
)
# One key per run: the reply reuses it, so each side waits only for its own run.
KEY = "order-42-{{ run_id }}"
REQUEST = "ti.xcom_pull(task_ids='org2_receive_request')"

with DAG(
    dag_id="app2app_request_reply",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["app2app", "example"],
    doc_md=__doc__,
) as dag:
    org1_send_request = App2AppProduceOperator(
        task_id="org1_send_request",
        app2app_conn_id="app2app_org1",
        to=REQUEST_DESTINATION,
        content={"request": "status of order 42", "run_id": "{{ run_id }}"},
        key=KEY,
    )
    org2_receive_request = App2AppMessageSensor(
        task_id="org2_receive_request",
        app2app_conn_id="app2app_org2",  # waits at the connection's default destination
        key=KEY,
        content_format="json",
        timeout=120,
    )
    org2_send_reply = App2AppProduceOperator(
        task_id="org2_send_reply",
        app2app_conn_id="app2app_org2",
        to="{{ " + REQUEST + "['sender'] }}",
        content={
            "reply": "order 42 has shipped",
            "in_reply_to": "{{ " + REQUEST + "['content']['request'] }}",
        },
        key=KEY,
    )
    org1_receive_reply = App2AppMessageSensor(
        task_id="org1_receive_reply",
        app2app_conn_id="app2app_org1",
        key=KEY,
        content_format="json",
        timeout=120,
    )

    org1_send_request >> org2_receive_request >> org2_send_reply >> org1_receive_reply
