"""What the emulator tells its user: ``environment.json`` and the start-up summary.

``<data-dir>/environment.json`` is for programs (tests, CI scripts, the demo)::

    {
      "endpoint": "ws://127.0.0.1:8765/api/v1",     # as the console would show it
      "host": "127.0.0.1", "port": 8765,
      "socketio": {"url": "http://127.0.0.1:8765", "path": "socket.io",
                   "namespace": "/api/v1"},
      "addressbook_url": "http://127.0.0.1:8765/api/v1/addressbook",
      "status_url": "http://127.0.0.1:8765/emulator/status",
      "pid": 1234, "store": "sqlite", "data_dir": "/abs/path", "config": "/abs/file.toml",
      "memberships": [{"id": "org1"}, ...],
      "credentials": [{"username", "password", "membership",
                       "airflow_conn_id", "airflow_env_var", "airflow_connection"}],
      "destinations": [{"name", "uri", "membership", "kaleido_managed",
                        "certificate_path", "private_key_path"}]   # paths: external only
    }

``airflow_connection`` is the JSON form of an Airflow connection (``conn_type``
``app2app``, ``host`` the endpoint, ``login``/``password`` the credential, ``extra``
with the membership's first Kaleido-managed destination as ``default_destination``),
ready to be the value of ``AIRFLOW_CONN_<CONN_ID>``. The file holds passwords, so it
is written readable by its owner only; passwords appear nowhere in the logs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from airflow_provider_app2app.emulator.config import Credential, EnvironmentConfig

ENVIRONMENT_FILE = "environment.json"


def airflow_conn_id(credential: Credential, environment: EnvironmentConfig) -> str:
    """``app2app_<membership>``, plus ``_<username>`` when the membership has several."""
    parts = ["app2app", credential.membership]
    if len(environment.credentials_of(credential.membership)) > 1:
        parts.append(credential.username)
    return re.sub(r"[^a-z0-9_]", "_", "_".join(parts).lower())


def airflow_connection(
    credential: Credential, environment: EnvironmentConfig, endpoint: str
) -> dict[str, Any]:
    """The Airflow connection (JSON form) for one credential."""
    connection: dict[str, Any] = {
        "conn_type": "app2app",
        "host": endpoint,
        "login": credential.username,
        "password": credential.password,
    }
    managed = [d for d in environment.destinations_of(credential.membership) if d.kaleido_managed]
    if managed:
        connection["extra"] = {"default_destination": managed[0].uri}
    return connection


def environment_document(
    environment: EnvironmentConfig,
    *,
    host: str,
    port: int,
    data_dir: Path,
    store: str,
    pid: int,
) -> dict[str, Any]:
    """The content of ``environment.json`` (see the module docstring).

    :param host: the host clients should use (bracketed when IPv6).
    :param port: the port actually bound.
    """
    base = f"http://{host}:{port}"
    endpoint = f"ws://{host}:{port}/api/v1"
    credentials = []
    for credential in environment.credentials:
        conn_id = airflow_conn_id(credential, environment)
        credentials.append(
            {
                "username": credential.username,
                "password": credential.password,
                "membership": credential.membership,
                "airflow_conn_id": conn_id,
                "airflow_env_var": f"AIRFLOW_CONN_{conn_id.upper()}",
                "airflow_connection": airflow_connection(credential, environment, endpoint),
            }
        )
    destinations = []
    for dest in environment.destinations:
        entry: dict[str, Any] = {
            "name": dest.name,
            "uri": dest.uri,
            "membership": dest.membership,
            "kaleido_managed": dest.kaleido_managed,
        }
        if not dest.kaleido_managed:
            entry["certificate_path"] = str(dest.certificate_path)
            entry["private_key_path"] = (
                str(dest.private_key_path) if dest.private_key_path else None
            )
        destinations.append(entry)
    return {
        "endpoint": endpoint,
        "host": host,
        "port": port,
        "socketio": {"url": base, "path": "socket.io", "namespace": "/api/v1"},
        "addressbook_url": f"{base}/api/v1/addressbook",
        "status_url": f"{base}/emulator/status",
        "pid": pid,
        "store": store,
        "data_dir": str(data_dir.resolve()),
        "config": str(environment.source) if environment.source else None,
        "memberships": [{"id": m.id} for m in environment.memberships],
        "credentials": credentials,
        "destinations": destinations,
    }


def write_environment_file(data_dir: Path, document: dict[str, Any]) -> Path:
    """Write ``environment.json`` atomically, readable by the owner only."""
    path = data_dir / ENVIRONMENT_FILE
    partial = data_dir / f".{ENVIRONMENT_FILE}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    partial.replace(path)
    return path


def human_summary(document: dict[str, Any], environment_file: Path, demo: bool) -> str:
    """The short start-up text: endpoint, memberships, and one Airflow connection each."""
    kind = "demo environment" if demo else f"environment from {document['config']}"
    lines = [
        f"App2App emulator: {kind}, store {document['store']}, data in {document['data_dir']}",
        f"  endpoint  {document['endpoint']}",
        f"  status    {document['status_url']}",
    ]
    for membership in document["memberships"]:
        lines.append(f"  membership {membership['id']}")
        for cred in document["credentials"]:
            if cred["membership"] == membership["id"]:
                lines.append(f"    credential   {cred['username']}  password {cred['password']}")
        for dest in document["destinations"]:
            if dest["membership"] == membership["id"]:
                kind = "Kaleido-managed" if dest["kaleido_managed"] else "externally managed"
                lines.append(f"    destination  {dest['uri']}  ({kind})")
                if not dest["kaleido_managed"]:
                    lines.append(f"                 certificate {dest['certificate_path']}")
                    if dest["private_key_path"]:
                        lines.append(f"                 private key {dest['private_key_path']}")
    lines.append("Airflow connections (paste into the shell that runs Airflow):")
    for cred in document["credentials"]:
        value = json.dumps(cred["airflow_connection"], separators=(",", ":"))
        lines.append(f"  export {cred['airflow_env_var']}={shlex.quote(value)}")
    lines.append(f"Machine-readable: {environment_file}")
    return "\n".join(lines)
