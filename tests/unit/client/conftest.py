"""Fixtures for the client unit tests (the doubles live in ``fakes.py``)."""

from __future__ import annotations

import pytest

from airflow_provider_app2app.client import forget_generations
from tests.unit.client.fakes import FakeAsyncTransport, FakeSyncTransport, FakeTransport


@pytest.fixture(autouse=True)
def _forget_generations():
    forget_generations()
    yield
    forget_generations()


@pytest.fixture
def fake_transport(monkeypatch):
    """Replace both clients' transports with :class:`FakeTransport` instances."""
    from airflow_provider_app2app.client import async_client, sync_client

    FakeTransport.instances = []
    FakeTransport.connect_errors = []
    FakeTransport.acks = {}
    monkeypatch.setattr(sync_client, "sync_transport", FakeSyncTransport)
    monkeypatch.setattr(async_client, "async_transport", FakeAsyncTransport)
    return FakeTransport
