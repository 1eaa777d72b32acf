"""``python -m airflow_provider_app2app.emulator``: same as ``app2app-emulator``."""

from airflow_provider_app2app.emulator.cli import main

raise SystemExit(main())
