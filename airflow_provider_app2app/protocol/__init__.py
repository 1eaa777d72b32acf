"""The App2App wire protocol, with no I/O: endpoints, messages, dialects and crypto.

Nothing in this package imports Socket.IO or Airflow, so the client, the emulator and
the Airflow parts can all share it.
"""
