"""Fixtures for the client integration tests: emulators, tenants, generation and flavour."""

from __future__ import annotations

import pytest

from airflow_provider_app2app.client import forget_generations
from tests.integration.client.helpers import Emulators

GENERATIONS = ["modern", "legacy"]


@pytest.fixture(scope="session")
def emulators(tmp_path_factory):
    registry = Emulators(tmp_path_factory.mktemp("client-emulators"))
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture
def tenant(emulators):
    """The default emulator (``data`` events, objects, BER envelopes)."""
    return emulators.tenant()


@pytest.fixture(params=GENERATIONS)
def generation(request):
    """Each protocol generation, pinned."""
    return request.param


@pytest.fixture(autouse=True)
def _forget_generations():
    forget_generations()
    yield
    forget_generations()
