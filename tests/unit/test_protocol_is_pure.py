"""The protocol layer imports neither Socket.IO nor Airflow (DESIGN.md, dependency rule)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_protocol_loads_no_socketio_and_no_airflow():
    code = (
        "import sys, airflow_provider_app2app.protocol.endpoint, "
        "airflow_provider_app2app.protocol.messages, airflow_provider_app2app.protocol.crypto; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'socketio', 'engineio', 'socketio_v4', 'engineio_v3', 'airflow', 'aiohttp'}); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
