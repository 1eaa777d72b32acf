"""Typed exceptions of the protocol layer.

Every exception carries one sentence saying what went wrong, with which object,
and what to do about it. None of them ever contains a password, a private key or
an ``Authorization`` header.
"""

from __future__ import annotations


class App2AppError(Exception):
    """Base class of every error raised by this package."""


class EndpointError(App2AppError, ValueError):
    """The endpoint URL or a tuning parameter is not usable."""


class PemError(App2AppError, ValueError):
    """A PEM document (private key, certificate or PKCS#7 envelope) cannot be read."""


class WrongKeyError(App2AppError):
    """An envelope was encrypted for another key than the one configured."""


class SignatureError(App2AppError):
    """A signature is missing, malformed, or does not match the content."""


class MalformedPayloadError(App2AppError, ValueError):
    """A payload received from, or sent to, the service has the wrong shape."""
