"""A local, durable emulator of the Kaleido App2App service.

Run it with ``app2app-emulator`` or ``python -m airflow_provider_app2app.emulator``
(see :mod:`.cli` for the flags). It speaks the wire protocol of PROTOCOL.md: Socket.IO
for both Engine.IO generations on one port, the address book, Basic auth, ownership
rules, signatures and PKCS#7 envelopes for externally-managed destinations, and the
delivery semantics of :mod:`.broker`, backed by SQLite (:mod:`.store`).

Modules, one concept each: :mod:`.config` (the environment and the demo one),
:mod:`.auth` (credentials), :mod:`.store` (durable logs), :mod:`.broker` (the
service's behaviour), :mod:`.eio3_compat` (the Engine.IO 3 server on Python 3.11),
:mod:`.transport` (Socket.IO), :mod:`.rest` (HTTP endpoints), :mod:`.summary`
(environment.json and the start-up text), :mod:`.connections` (Airflow connections
from environment.json), :mod:`.server` (assembly) and :mod:`.cli`.
"""
