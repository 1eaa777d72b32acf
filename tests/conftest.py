"""Suite-wide set-up: a private AIRFLOW_HOME and the repository root on ``sys.path``.

Airflow creates ``~/airflow`` when it is imported without ``AIRFLOW_HOME``; the suite
must never touch the user's home, so a temporary home is set before anything
imports Airflow.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="app2app-test-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
