"""Airflow connections for an emulator's environment, ready for ``AIRFLOW_CONN_*``.

Per credential: ``app2app_<membership>`` (default destination: its Kaleido-managed
destination) and, when the membership has an externally-managed destination,
``app2app_<membership>_external`` (default destination: the external one, with its
private key and certificate, and every other external destination's certificate as
peer certificate for signature checks). Reads the key and certificate files named in
``environment.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _read(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


def airflow_connections(environment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Connection ID → JSON form of the connection, for every credential."""
    destinations = environment["destinations"]
    certificates = {
        d["uri"]: _read(d.get("certificate_path"))
        for d in destinations
        if not d["kaleido_managed"] and d.get("certificate_path")
    }
    connections: dict[str, dict[str, Any]] = {}
    for credential in environment["credentials"]:
        conn_id = credential["airflow_conn_id"]
        base = credential["airflow_connection"]
        connections[conn_id] = base
        external = [
            d
            for d in destinations
            if d["membership"] == credential["membership"] and not d["kaleido_managed"]
        ]
        if not external:
            continue
        own = external[0]
        peers = {uri: pem for uri, pem in certificates.items() if uri != own["uri"] and pem}
        connections[f"{conn_id}_external"] = {
            **base,
            "extra": {
                "default_destination": own["uri"],
                "private_key": _read(own.get("private_key_path")),
                "certificate": _read(own.get("certificate_path")),
                "peer_certificates": json.dumps(peers),
            },
        }
    return connections


def airflow_connection_env(environment: dict[str, Any]) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` → JSON text, for every connection of :func:`airflow_connections`."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)
        for conn_id, connection in airflow_connections(environment).items()
    }


def load_environment(data_dir: str | Path) -> dict[str, Any]:
    """Read ``<data_dir>/environment.json``."""
    document: dict[str, Any] = json.loads((Path(data_dir) / "environment.json").read_text())
    return document
