"""Airflow finds the provider and its ``app2app`` connection type through the entry point."""

from __future__ import annotations

import warnings

import pytest

from airflow_provider_app2app.get_provider_info import CONNECTION_FIELDS, get_provider_info


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_package_name_is_the_canonical_distribution_name():
    from importlib.metadata import distribution

    from packaging.utils import canonicalize_name

    name = get_provider_info()["package-name"]
    assert canonicalize_name(distribution(name).metadata["Name"]) == name


def test_providers_manager_lists_the_provider(providers_manager):
    provider = providers_manager.providers["airflow-provider-app2app"]
    assert provider.data["name"] == "Kaleido App2App"


def test_providers_manager_knows_the_app2app_connection_type(providers_manager):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hook_info = providers_manager.hooks["app2app"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_app2app.hooks.app2app.App2AppHook"
    assert hook_info.connection_id_attribute_name == "app2app_conn_id"


def test_connection_form_fields_are_read_back_from_provider_info(providers_manager):
    widgets = providers_manager.connection_form_widgets
    for field in CONNECTION_FIELDS:
        assert f"extra__app2app__{field}" in widgets
    assert widgets["extra__app2app__private_key"].is_sensitive
    assert not widgets["extra__app2app__certificate"].is_sensitive
    behaviour = providers_manager.field_behaviours["app2app"]
    assert behaviour["relabeling"]["host"] == "Endpoint"
    assert "port" in behaviour["hidden_fields"]
