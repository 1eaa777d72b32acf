"""The request/reply exchange between externally-managed destinations.

Each organisation holds its destination's private key: org1 signs its request, the
service delivers it to org2 encrypted for org2's certificate (PKCS#7), org2's sensor
decrypts it and verifies org1's signature, and the reply goes back the same way. The
connections ``app2app_org1_external`` and ``app2app_org2_external`` carry the keys,
certificates and peer certificates (``make demo`` builds them from the emulator's
``environment.json``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_app2app.operators.app2app import App2AppProduceOperator
from airflow_provider_app2app.sensors.app2app import App2AppMessageSensor

REQUEST_DESTINATION = (
    "{{ var.value.get('app2app_external_request_destination', "
    "'kld://app2app/m/org2/e/local/s/app2app/d/org2-external') }}"
)
KEY = "signed-order-7-{{ run_id }}"

with DAG(
    dag_id="app2app_request_reply_external",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["app2app", "example"],
    doc_md=__doc__,
) as dag:
    org1_send_signed_request = App2AppProduceOperator(
        task_id="org1_send_signed_request",
        app2app_conn_id="app2app_org1_external",
        to=REQUEST_DESTINATION,
        content={"request": "confirm order 7"},
        key=KEY,
    )
    org2_receive_request = App2AppMessageSensor(
        task_id="org2_receive_request",
        app2app_conn_id="app2app_org2_external",
        key=KEY,
        content_format="json",
        timeout=120,
    )
    org2_send_signed_reply = App2AppProduceOperator(
        task_id="org2_send_signed_reply",
        app2app_conn_id="app2app_org2_external",
        to="{{ ti.xcom_pull(task_ids='org2_receive_request')['sender'] }}",
        content={"reply": "order 7 confirmed"},
        key=KEY,
    )
    org1_receive_reply = App2AppMessageSensor(
        task_id="org1_receive_reply",
        app2app_conn_id="app2app_org1_external",
        key=KEY,
        content_format="json",
        timeout=120,
    )

    org1_send_signed_request >> org2_receive_request >> org2_send_signed_reply >> org1_receive_reply
