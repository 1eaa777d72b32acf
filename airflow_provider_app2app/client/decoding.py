"""From a ``data``/``message`` event to a checked :class:`ReceivedMessage` (no I/O).

A managed recipient gets the message document as an object or as its JSON text; an
externally-managed recipient gets a PKCS#7 PEM, opened here with the configured
identity (BER and DER envelopes alike). A signature, when present, is verified
against the sender's certificate: ``verified``, ``unknown_sender`` (no certificate
configured for that sender) or ``invalid`` (an error unless explicitly allowed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from airflow_provider_app2app.client.errors import DecryptionError, InvalidSignatureError
from airflow_provider_app2app.client.settings import ClientSettings
from airflow_provider_app2app.protocol.crypto import Identity, open_envelope, verify
from airflow_provider_app2app.protocol.errors import (
    MalformedPayloadError,
    PemError,
    SignatureError,
    WrongKeyError,
)
from airflow_provider_app2app.protocol.messages import (
    ReceivedMessage,
    is_envelope,
    parse_message_document,
)

__all__ = ["MessageDecoder"]


class MessageDecoder:
    """Decodes delivered payloads with the settings' identities and certificates.

    :param settings: the client settings (identities, peer certificates, and whether
        invalid signatures are allowed).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings

    def decode(
        self,
        payload: object,
        key: object = None,
        timestamp: object = None,
        subscribed: Iterable[str] = (),
    ) -> ReceivedMessage:
        """Decode, decrypt and verify one delivered payload.

        :param subscribed: the connection's subscribed destinations, whose
            identities are tried first for an envelope.
        :raises DecryptionError: for an envelope no configured identity opens.
        :raises InvalidSignatureError: for a signature that does not verify (unless
            allowed by the settings).
        :raises MalformedPayloadError: for a payload of the wrong shape.
        """
        if is_envelope(payload):
            plaintext = self._open(payload, key, subscribed)
            message = parse_message_document(plaintext, key, timestamp, encrypted=True)
        else:
            message = parse_message_document(payload, key, timestamp)
        if message.signature is None:
            return message
        return self._check_signature(message)

    def _candidates(self, subscribed: Iterable[str]) -> list[Identity]:
        settings = self._settings
        ordered: list[Identity] = []
        for uri in subscribed:
            identity = settings.identities.get(uri)
            if identity is not None and identity not in ordered:
                ordered.append(identity)
        if settings.identity is not None and settings.identity not in ordered:
            ordered.append(settings.identity)
        for identity in settings.identities.values():
            if identity not in ordered:
                ordered.append(identity)
        return ordered

    def _open(self, payload: object, key: object, subscribed: Iterable[str]) -> bytes:
        pem = payload if isinstance(payload, str | bytes) else bytes(payload)  # type: ignore[call-overload]
        subscribed = list(subscribed)
        key_text = None if key is None else str(key)
        candidates = self._candidates(subscribed)
        where = ", ".join(subscribed) or "an externally-managed destination"
        if not candidates:
            raise DecryptionError(
                f"Message {key_text!r} delivered to {where} is encrypted, but no private "
                f"key is configured; configure the identity (private key and certificate) "
                f"of that destination.",
                key=key_text,
            )
        last: Exception | None = None
        for identity in candidates:
            try:
                return open_envelope(pem, identity.private_key, identity.certificate)
            except WrongKeyError as exc:
                last = exc
            except (PemError, MalformedPayloadError) as exc:
                raise DecryptionError(
                    f"Message {key_text!r} delivered to {where} is not a readable "
                    f"envelope ({exc}); the service sent a damaged payload, so report it "
                    f"to the service operator.",
                    key=key_text,
                ) from None
        raise DecryptionError(
            f"Message {key_text!r} delivered to {where} was encrypted for another key "
            f"than the {len(candidates)} configured ({last}); configure the private key "
            f"and certificate registered for that destination.",
            key=key_text,
        ) from None

    def _check_signature(self, message: ReceivedMessage) -> ReceivedMessage:
        assert message.signature is not None
        certificate = self._settings.certificate_for(message.sender)
        if certificate is None:
            return replace(message, signature_status="unknown_sender")
        try:
            verify(message.content, message.signature, certificate)
        except SignatureError as exc:
            if self._settings.allow_invalid_signatures:
                return replace(message, signature_status="invalid")
            raise InvalidSignatureError(
                f"Message {message.key!r} from {message.sender} has an invalid signature "
                f"({exc}); it was not handed out. Fix the certificate configured for "
                f"that sender, or set allow_invalid_signatures to receive such messages "
                f"marked 'invalid'.",
                key=message.key,
                sender=message.sender,
            ) from None
        return replace(message, signature_status="verified")
