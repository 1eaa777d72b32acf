"""Who is calling: HTTP Basic authentication of app credentials.

The socket handshake and the REST endpoints both send
``Authorization: Basic base64(username:password)``; the service's doc page leaves out
the word ``Basic``, so both forms are accepted. A refusal reason names the username
(helpful locally) but never echoes the password or the header.
"""

from __future__ import annotations

import hmac

from airflow_provider_app2app.emulator.config import Credential, EnvironmentConfig
from airflow_provider_app2app.protocol.endpoint import parse_basic_auth
from airflow_provider_app2app.protocol.errors import App2AppError

_HOW = "send 'Authorization: Basic base64(username:password)' with an app credential"


class AuthenticationError(App2AppError):
    """The caller could not be authenticated; the message is safe to send back."""


def authenticate(environment: EnvironmentConfig, header: str | None) -> Credential:
    """Return the credential an ``Authorization`` header proves.

    :param environment: the environment whose credentials are accepted.
    :param header: the header value, with or without the ``Basic`` prefix.
    :raises AuthenticationError: for a missing, unreadable or wrong credential.
    """
    if not header:
        raise AuthenticationError(f"No Authorization header; {_HOW} of your membership.")
    parsed = parse_basic_auth(header)
    if parsed is None:
        raise AuthenticationError(f"The Authorization header is not HTTP Basic; {_HOW}.")
    username, password = parsed
    credential = environment.credential(username)
    if credential is None:
        known = ", ".join(c.username for c in environment.credentials)
        raise AuthenticationError(
            f"Unknown app credential {username!r}; {_HOW}. Known usernames: {known}."
        )
    if not hmac.compare_digest(credential.password.encode(), password.encode()):
        raise AuthenticationError(
            f"Wrong password for app credential {username!r}; copy it from "
            f"environment.json in the emulator's data directory."
        )
    return credential
