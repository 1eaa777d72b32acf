"""App2App clients: one blocking, one asyncio, same vocabulary, shared non-I/O code.

Quick start::

    from airflow_provider_app2app.client import App2AppClient

    with App2AppClient(
        endpoint="wss://<host>/api/v1", username="...", password="...",
        default_sender="kld://app2app/m/.../d/me",
    ) as client:
        receipt = client.produce("kld://app2app/m/.../d/partner", {"hello": "world"}, key="k1")
        client.wait_for_delivery([receipt], timeout=10)

Both clients negotiate the Socket.IO generation (modern first, Engine.IO 3 when the
server needs it), reconnect with capped exponential backoff and jitter,
re-subscribe on every reconnect, and consume at-least-once: with
``auto_commit=false`` a message handed out but not committed before a reconnect is
delivered again, and no commit is sent for a message of an earlier connection.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_app2app.client.async_client import AsyncApp2AppClient
    from airflow_provider_app2app.client.base import ProduceRequest
    from airflow_provider_app2app.client.errors import (
        App2AppConnectionError,
        App2AppTimeoutError,
        AuthenticationError,
        ClientClosedError,
        ClientConfigurationError,
        ConnectionLostError,
        DecryptionError,
        DeliveryUnconfirmedError,
        EndpointUnreachableError,
        InvalidSignatureError,
        ProtocolMismatchError,
        ServiceError,
        TlsError,
    )
    from airflow_provider_app2app.client.negotiation import forget_generations
    from airflow_provider_app2app.client.settings import (
        BackoffPolicy,
        ClientSettings,
        Generation,
        SocketIOVersion,
    )
    from airflow_provider_app2app.client.sync_client import App2AppClient
    from airflow_provider_app2app.client.tracking import DeliveredMessage, ProduceReceipt
    from airflow_provider_app2app.protocol.crypto import Identity
    from airflow_provider_app2app.protocol.errors import App2AppError
    from airflow_provider_app2app.protocol.messages import DeliveryReport, ReceivedMessage

# The transports (python-socketio, aiohttp, websocket-client) load on first use, so that
# DAG files importing operators and sensors stay cheap to parse.
_LAZY = {
    "AsyncApp2AppClient": "async_client",
    "App2AppClient": "sync_client",
    "ProduceRequest": "base",
    "forget_generations": "negotiation",
    "BackoffPolicy": "settings",
    "ClientSettings": "settings",
    "Generation": "settings",
    "SocketIOVersion": "settings",
    "DeliveredMessage": "tracking",
    "ProduceReceipt": "tracking",
}
_OTHER = {
    "Identity": "airflow_provider_app2app.protocol.crypto",
    "App2AppError": "airflow_provider_app2app.protocol.errors",
    "DeliveryReport": "airflow_provider_app2app.protocol.messages",
    "ReceivedMessage": "airflow_provider_app2app.protocol.messages",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    elif name in _OTHER:
        module = importlib.import_module(_OTHER[name])
    elif name in __all__:
        module = importlib.import_module(f"{__name__}.errors")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "App2AppClient",
    "App2AppConnectionError",
    "App2AppError",
    "App2AppTimeoutError",
    "AsyncApp2AppClient",
    "AuthenticationError",
    "BackoffPolicy",
    "ClientClosedError",
    "ClientConfigurationError",
    "ClientSettings",
    "ConnectionLostError",
    "DecryptionError",
    "DeliveredMessage",
    "DeliveryReport",
    "DeliveryUnconfirmedError",
    "EndpointUnreachableError",
    "Generation",
    "Identity",
    "InvalidSignatureError",
    "ProduceReceipt",
    "ProduceRequest",
    "ProtocolMismatchError",
    "ReceivedMessage",
    "ServiceError",
    "SocketIOVersion",
    "TlsError",
    "forget_generations",
]
