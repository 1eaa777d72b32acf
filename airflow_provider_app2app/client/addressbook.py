"""The address book: ``GET <base>/api/v1/addressbook`` (PROTOCOL.md §6), over HTTP.

Every destination of the environment, grouped by membership:
``[{"membership": "/<id>", "destinations": [{"uri": ..., "name": ...}]}]``.
"""

from __future__ import annotations

from typing import Any

import requests

from airflow_provider_app2app.client.errors import (
    AuthenticationError,
    EndpointUnreachableError,
    ServiceError,
    TlsError,
)
from airflow_provider_app2app.client.settings import ClientSettings
from airflow_provider_app2app.protocol.endpoint import basic_auth_header


def address_book_url(settings: ClientSettings) -> str:
    """The address book's URL for the settings' endpoint."""
    endpoint = settings.parsed_endpoint
    return f"{endpoint.base_url}{endpoint.namespace}/addressbook"


def read_address_book(settings: ClientSettings) -> list[dict[str, Any]]:
    """Read the address book with the settings' credential (blocking).

    :raises AuthenticationError: for a refused credential (names the username).
    :raises EndpointUnreachableError: when nothing answers at the endpoint.
    :raises TlsError: when the server's certificate is not trusted.
    :raises ServiceError: for any other unexpected answer.
    """
    url = address_book_url(settings)
    verify: bool | str = settings.ca_bundle or settings.verify_tls
    try:
        response = requests.get(
            url,
            headers={"Authorization": basic_auth_header(settings.username, settings.password)},
            timeout=settings.connect_timeout,
            verify=verify,
        )
    except requests.exceptions.SSLError:
        raise TlsError(
            f"The TLS certificate of {url} is not trusted; set the CA bundle of the "
            f"connection, or turn TLS verification off for a test endpoint."
        ) from None
    except requests.exceptions.RequestException as exc:
        raise EndpointUnreachableError(
            f"Nothing answered at {url} ({type(exc).__name__}); check the endpoint host "
            f"and port and that the service is running."
        ) from None
    if response.status_code in (401, 403):
        raise AuthenticationError(
            f"The App2App service refused the credential of user {settings.username!r} "
            f"(HTTP {response.status_code}); check the connection's login and password.",
            username=settings.username,
        )
    if response.status_code != 200:
        raise ServiceError(
            f"The address book at {url} answered HTTP {response.status_code}; check the "
            f"endpoint (it should end in /api/v1).",
            operation="addressbook",
            service_text=response.text[:200],
        )
    try:
        book = response.json()
    except ValueError:
        book = None
    if not isinstance(book, list):
        raise ServiceError(
            f"The address book at {url} did not answer with a JSON list.",
            operation="addressbook",
            service_text=response.text[:200],
        )
    return book
