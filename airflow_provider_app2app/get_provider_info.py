"""Provider metadata that Airflow's ``ProvidersManager`` reads through the entry point.

Declared in ``pyproject.toml`` under ``[project.entry-points.apache_airflow_provider]``.
Airflow ≥ 3.2 builds the connection form from ``conn-fields`` and
``ui-field-behaviour`` here, without importing the hook.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_app2app import __version__

_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}


def _secret(label: str, description: str) -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": ["string", "null"], "format": "password"},
    }


CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "default_destination": {
        "label": "Default destination",
        "description": "URI of this membership's destination used when a task names none, "
        "e.g. kld://app2app/m/<member>/e/<env>/s/<service>/d/<name>.",
        "schema": _NULLABLE_STRING,
    },
    "auto_commit": {
        "label": "auto_commit",
        "description": "Handshake parameter for consumers; sensors and triggers always "
        "commit explicitly and ignore it.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "read_ahead": {
        "label": "read_ahead",
        "description": "How many delivered but uncommitted messages may be outstanding.",
        "schema": {"type": ["integer", "null"], "default": 1, "minimum": 1},
    },
    "batch_size": {
        "label": "batch_size",
        "description": "How many produced messages the service may seal into one batch.",
        "schema": {"type": ["integer", "null"], "default": 1, "minimum": 1},
    },
    "batch_timeout": {
        "label": "batch_timeout (ms)",
        "description": "How long the service waits for more messages before sealing a batch.",
        "schema": {"type": ["integer", "null"], "default": 250, "minimum": 1},
    },
    "socketio_version": {
        "label": "Socket.IO protocol",
        "description": "auto tries the modern protocol (Engine.IO 4) first and falls back to "
        "the legacy one (Engine.IO 3); pin modern or legacy to skip negotiation.",
        "schema": {
            "type": ["string", "null"],
            "default": "auto",
            "enum": ["auto", "modern", "legacy"],
        },
    },
    "payload_dialect": {
        "label": "Produce payload dialect",
        "description": "proven: nested headers (the vendor's client); documented: flat fields.",
        "schema": {
            "type": ["string", "null"],
            "default": "proven",
            "enum": ["proven", "documented"],
        },
    },
    "verify_tls": {
        "label": "Verify TLS certificates",
        "description": "Turn off only for a test endpoint with a self-signed certificate.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Path to a PEM file of CA certificates to trust instead of the system's.",
        "schema": _NULLABLE_STRING,
    },
    "private_key": _secret(
        "Destination private key (PEM)",
        "RSA private key of this membership's externally-managed destination: signs what "
        "it sends and decrypts what it receives.",
    ),
    "certificate": {
        "label": "Destination certificate (PEM)",
        "description": "X.509 certificate that belongs to the private key.",
        "schema": _NULLABLE_STRING,
    },
    "peer_certificates": {
        "label": "Peer certificates (JSON)",
        "description": "JSON object mapping a sender destination URI to its certificate PEM, "
        'used to verify signatures: {"kld://…/d/partner-external": '
        '"-----BEGIN CERTIFICATE-----…"}.',
        "schema": _NULLABLE_STRING,
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info`` schema."""
    return {
        "package-name": "airflow-provider-app2app",
        "name": "Kaleido App2App",
        "description": "Send and receive organisation-to-organisation messages with the "
        "Kaleido App2App service, and run a local App2App emulator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Kaleido App2App",
                "external-doc-url": "https://github.com/kaleido-io",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Kaleido App2App",
                "python-modules": ["airflow_provider_app2app.hooks.app2app"],
            }
        ],
        "operators": [
            {
                "integration-name": "Kaleido App2App",
                "python-modules": ["airflow_provider_app2app.operators.app2app"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Kaleido App2App",
                "python-modules": ["airflow_provider_app2app.sensors.app2app"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Kaleido App2App",
                "python-modules": ["airflow_provider_app2app.triggers.app2app"],
            }
        ],
        "queues": ["airflow_provider_app2app.queues.app2app.App2AppMessageQueueProvider"],
        "connection-types": [
            {
                "connection-type": "app2app",
                "hook-class-name": "airflow_provider_app2app.hooks.app2app.App2AppHook",
                "hook-name": "Kaleido App2App",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Endpoint",
                        "login": "App credential username",
                        "password": "App credential password",
                    },
                    "placeholders": {
                        "host": "wss://<host>/api/v1",
                        "login": "app credential ID",
                        "extra": '{"default_destination": "kld://app2app/m/…/d/…"}',
                    },
                },
            }
        ],
    }
