"""RSA signatures and PKCS#7 envelopes for externally-managed App2App destinations.

An externally-managed destination owns an RSA-2048 key and a self-signed X.509
certificate. Messages *sent* from it carry an RSA-SHA256 (PKCS#1 v1.5) signature over
the content bytes; messages *delivered* to it arrive as a PEM
(``-----BEGIN PKCS7-----``) of a PKCS#7 **EnvelopedData**: AES-256-CBC content,
RSA PKCS#1 v1.5 key transport, one recipient. This module is pure: no I/O, no
Socket.IO, no Airflow.

The BER interop trap
--------------------
The service seals envelopes with the vendor's JavaScript library, node-forge, which
writes the ``encryptedContent [0] IMPLICIT OCTET STRING`` of the
``EncryptedContentInfo`` in the *constructed* form: ``A0 <len> 04 <len> <ciphertext>``
(a context tag wrapping one ordinary OCTET STRING, definite lengths everywhere).
That is valid BER but not DER, whose only form is the primitive
``80 <len> <ciphertext>``. OpenSSL accepts both; ``cryptography``'s
``pkcs7_decrypt_der``/``pkcs7_decrypt_pem`` are DER-strict and refuse the vendor's
envelopes with ``ParseError { kind: ExtraData, location: [..., "EnvelopedData::
encrypted_content_info"] }``. asn1crypto's ``cms`` classes refuse it as well (they
only take constructed strings with indefinite lengths).

:func:`open_envelope` therefore normalises the envelope to DER first: it walks the
TLV tree with asn1crypto's low-level parser, re-emits every length in definite
minimal form, folds constructed OCTET STRINGs, and turns the encrypted content back
into the primitive ``[0]``, then lets ``cryptography`` decrypt. :func:`build_envelope`
does the reverse rewrite for ``encoding="ber"`` (the default), so the emulator emits
byte layouts like the real service, PEM line endings (CRLF) included; ``"der"``
gives ``cryptography``'s own DER.

Two more traps: ``cryptography`` < 45 cannot do AES-256 envelopes, and without
``PKCS7Options.Binary`` it rewrites LF to CRLF in the content (S/MIME text mode).

Error messages never contain key material: they name the object (certificate
subject, serial number, PEM label) and the fix.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from asn1crypto import cms as _asn1_cms  # type: ignore[import-untyped, unused-ignore]
from asn1crypto import core as _asn1_core  # type: ignore[import-untyped, unused-ignore]
from asn1crypto import keys as _asn1_keys  # type: ignore[import-untyped, unused-ignore]
from asn1crypto import parser as _asn1_parser  # type: ignore[import-untyped, unused-ignore]
from asn1crypto import x509 as _asn1_x509  # type: ignore[import-untyped, unused-ignore]
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from airflow_provider_app2app.protocol.errors import (
    MalformedPayloadError,
    PemError,
    SignatureError,
    WrongKeyError,
)

__all__ = [
    "EnvelopeEncoding",
    "Identity",
    "MalformedSignatureError",
    "build_envelope",
    "decode_signature",
    "generate_identity",
    "load_certificate",
    "load_private_key",
    "open_envelope",
    "sign",
    "verify",
]

EnvelopeEncoding = Literal["ber", "der"]
"""``"ber"``: node-forge's constructed ``[0]`` (the service's form); ``"der"``: strict DER."""

PEM_ENVELOPE_LABELS: Final = ("PKCS7", "CMS")
_PRIVATE_KEY_LABELS: Final = ("PRIVATE KEY", "RSA PRIVATE KEY")
_CERTIFICATE_LABELS: Final = ("CERTIFICATE", "X509 CERTIFICATE")
_EXPECTED_KEY: Final = (
    "an unencrypted RSA private key PEM ('-----BEGIN PRIVATE KEY-----' or "
    "'-----BEGIN RSA PRIVATE KEY-----')"
)
_EXPECTED_CERTIFICATE: Final = "an X.509 certificate PEM ('-----BEGIN CERTIFICATE-----')"
_EXPECTED_ENVELOPE: Final = "a PKCS#7 envelope PEM ('-----BEGIN PKCS7-----')"

_OID_ENVELOPED_DATA: Final = "1.2.840.113549.1.7.3"

# ASN.1 identifiers (class, method, tag) used by the TLV rewriting below.
_UNIVERSAL: Final = 0
_CONTEXT: Final = 2
_PRIMITIVE: Final = 0
_CONSTRUCTED: Final = 1
_TAG_OCTET_STRING: Final = 4
_TAG_OID: Final = 6
_TAG_SEQUENCE: Final = 16
_MAX_DEPTH: Final = 64
# ContentInfo SEQUENCE / [0] EXPLICIT / EnvelopedData SEQUENCE / EncryptedContentInfo
# SEQUENCE / encryptedContent [0] IMPLICIT. EncryptedContentInfo is the only universal
# SEQUENCE directly inside EnvelopedData (recipientInfos is a SET, originatorInfo a
# [0]), so this (class, tag) path names the encrypted content unambiguously.
_ENCRYPTED_CONTENT_PATH: Final = (
    (_UNIVERSAL, _TAG_SEQUENCE),
    (_CONTEXT, 0),
    (_UNIVERSAL, _TAG_SEQUENCE),
    (_UNIVERSAL, _TAG_SEQUENCE),
    (_CONTEXT, 0),
)

# Short names of the usual Name attributes, as RFC 4514 (and cryptography) write them.
_ATTRIBUTE_NAMES: Final = {
    NameOID.COMMON_NAME.dotted_string: "CN",
    NameOID.ORGANIZATION_NAME.dotted_string: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string: "OU",
    NameOID.COUNTRY_NAME.dotted_string: "C",
    NameOID.STATE_OR_PROVINCE_NAME.dotted_string: "ST",
    NameOID.LOCALITY_NAME.dotted_string: "L",
    NameOID.EMAIL_ADDRESS.dotted_string: "emailAddress",
}

_HEX_SIGNATURE: Final = re.compile(r"(?:0[xX])?((?:[0-9a-fA-F]{2})+)")
_BASE64_SIGNATURE: Final = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")


class MalformedSignatureError(SignatureError, MalformedPayloadError):
    """A signature value has a shape that cannot be decoded to bytes.

    It is both a :class:`SignatureError` and a :class:`MalformedPayloadError`, so callers
    may catch either.
    """


# --------------------------------------------------------------------------- PEM input


@dataclass(frozen=True)
class _PemBlock:
    label: str
    headers: tuple[str, ...]
    der: bytes


_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 #]+)-----")


def _pem_text(pem: object, what: str, expected: str) -> str:
    """The PEM input as text, with escaped newlines (``\\n`` in JSON extras) undone."""
    if isinstance(pem, bytes | bytearray | memoryview):
        try:
            text = bytes(pem).decode("ascii")
        except UnicodeDecodeError:
            raise PemError(
                f"The {what} is binary data, not PEM text; expected {expected}."
            ) from None
    elif isinstance(pem, str):
        text = pem
    else:
        raise PemError(
            f"The {what} must be PEM text (str or bytes), not {type(pem).__name__}; "
            f"expected {expected}."
        )
    text = text.strip()
    if "\n" not in text and "\\n" in text:
        # A PEM pasted into a JSON field often arrives with literal "\n" sequences.
        text = text.replace("\\r\\n", "\n").replace("\\n", "\n")
    return text


def _pem_blocks(text: str, what: str, expected: str) -> list[_PemBlock]:
    """Every PEM block of ``text``, base64-decoded. Raises PemError on damage."""
    blocks: list[_PemBlock] = []
    position = 0
    while (begin := _PEM_BEGIN.search(text, position)) is not None:
        label = begin.group(1)
        end_marker = f"-----END {label}-----"
        end = text.find(end_marker, begin.end())
        if end < 0:
            raise PemError(
                f"The {what} is truncated: its '-----BEGIN {label}-----' block has no "
                f"'{end_marker}' line; paste the complete PEM."
            )
        headers: list[str] = []
        body: list[str] = []
        for raw_line in text[begin.end() : end].splitlines():
            line = raw_line.strip()
            if not line:
                continue
            if ":" in line and not body:
                headers.append(line)
            else:
                body.append(line)
        try:
            der = base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError):
            raise PemError(
                f"The {what} is garbled: the body of its '{label}' PEM block is not "
                f"valid base64; paste the PEM unchanged, as {expected}."
            ) from None
        if not der:
            raise PemError(f"The {what} has an empty '{label}' PEM block; expected {expected}.")
        blocks.append(_PemBlock(label, tuple(headers), der))
        position = end + len(end_marker)
    if not blocks:
        raise PemError(f"The {what} is not PEM (no '-----BEGIN' line); expected {expected}.")
    return blocks


def _pick_block(
    blocks: Sequence[_PemBlock], labels: Sequence[str], what: str, expected: str
) -> _PemBlock:
    for block in blocks:
        if block.label in labels:
            return block
    found = ", ".join(f"'{block.label}'" for block in blocks)
    if any("ENCRYPTED" in block.label for block in blocks):
        raise PemError(
            f"The {what} is an encrypted private key; decrypt it first "
            f"(e.g. 'openssl pkey -in key.pem -out plain.pem') and provide {expected}."
        )
    raise PemError(f"The {what} contains {found} PEM data; expected {expected}.")


# ------------------------------------------------------------------ keys & certificates


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Load an unencrypted RSA private key from PEM (PKCS#8 or PKCS#1).

    Accepts surrounding whitespace, CRLF line endings, literal ``\\n`` escapes, and a
    PEM bundle holding other blocks too (the first private key is used).

    :raises PemError: for anything but an unencrypted RSA private key PEM.
    """
    what = "private key"
    blocks = _pem_blocks(_pem_text(pem, what, _EXPECTED_KEY), what, _EXPECTED_KEY)
    block = _pick_block(blocks, _PRIVATE_KEY_LABELS, what, _EXPECTED_KEY)
    if any("ENCRYPTED" in header.upper() for header in block.headers):
        raise PemError(
            f"The {what} is encrypted (legacy 'Proc-Type: 4,ENCRYPTED' PEM); decrypt it "
            f"first (e.g. 'openssl pkey -in key.pem -out plain.pem') and provide "
            f"{_EXPECTED_KEY}."
        )
    try:
        key = serialization.load_der_private_key(block.der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Deliberately no chaining: the cause might echo parts of the key.
        raise PemError(
            f"The {what} PEM block '{block.label}' is garbled or truncated and could "
            f"not be read; paste the complete key, as {_EXPECTED_KEY}."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PemError(
            f"The {what} is a {_key_kind(key)} key; App2App destinations use RSA, so "
            f"provide {_EXPECTED_KEY}."
        )
    return key


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """Load an X.509 certificate holding an RSA public key from PEM.

    The first certificate of a bundle is used.

    :raises PemError: when the input is not a readable X.509 certificate PEM, or the
        certificate's key is not RSA.
    """
    what = "certificate"
    blocks = _pem_blocks(_pem_text(pem, what, _EXPECTED_CERTIFICATE), what, _EXPECTED_CERTIFICATE)
    block = _pick_block(blocks, _CERTIFICATE_LABELS, what, _EXPECTED_CERTIFICATE)
    try:
        certificate = x509.load_der_x509_certificate(block.der)
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PemError(
            f"The {what} PEM is garbled or truncated and could not be read; paste the "
            f"complete certificate, as {_EXPECTED_CERTIFICATE}."
        ) from exc
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise PemError(
            f"The {what} {_describe_certificate(certificate)} holds a "
            f"{_key_kind(public_key)} key; App2App destinations use RSA certificates."
        )
    return certificate


def _key_kind(key: object) -> str:
    name = type(key).__name__
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return name.lstrip("_") or "non-RSA"


def _describe_certificate(certificate: x509.Certificate) -> str:
    """``'CN=org1-external' (serial 0x1f...)``: names a certificate without key material."""
    try:
        subject = certificate.subject.rfc4514_string()
    except ValueError:
        subject = "<unreadable subject>"
    return f"'{subject}' (serial {certificate.serial_number:#x})"


def _rsa_public_key(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    if not isinstance(certificate, x509.Certificate):
        raise TypeError(
            f"certificate must be an x509.Certificate, not {type(certificate).__name__}"
        )
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise PemError(
            f"The certificate {_describe_certificate(certificate)} holds a "
            f"{_key_kind(public_key)} key; App2App destinations use RSA certificates."
        )
    return public_key


def _key_matches(private_key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bool:
    public_key = certificate.public_key()
    return (
        isinstance(public_key, rsa.RSAPublicKey)
        and public_key.public_numbers() == private_key.public_key().public_numbers()
    )


def generate_identity(common_name: str, days: int = 3650) -> tuple[str, str]:
    """Create a destination identity: an RSA-2048 key and a self-signed certificate.

    :param common_name: the certificate's subject (and issuer) CN.
    :param days: validity from now.
    :return: ``(private_key_pem, certificate_pem)``; the key is unencrypted PKCS#8.
    """
    if not common_name:
        raise ValueError("common_name must not be empty; pass the destination's subject.")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}.")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return key_pem, certificate_pem


@dataclass(frozen=True)
class Identity:
    """A destination's private key and the certificate that belongs to it.

    :raises PemError: on construction when the key does not belong to the certificate.
    """

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        _rsa_public_key(self.certificate)
        if not _key_matches(self.private_key, self.certificate):
            raise PemError(
                f"The private key does not belong to the certificate "
                f"{_describe_certificate(self.certificate)}; configure the key and "
                f"certificate of the same destination."
            )

    @classmethod
    def from_pem(cls, key_pem: str | bytes, cert_pem: str | bytes) -> Identity:
        """Load and cross-check a key PEM and a certificate PEM.

        :raises PemError: when either PEM is unusable or they do not belong together.
        """
        return cls(load_private_key(key_pem), load_certificate(cert_pem))

    @classmethod
    def generate(cls, common_name: str, days: int = 3650) -> Identity:
        """A fresh identity (see :func:`generate_identity`)."""
        return cls.from_pem(*generate_identity(common_name, days))

    def sign(self, content: bytes) -> bytes:
        """RSA-SHA256 signature of ``content`` with this identity's key."""
        return sign(content, self.private_key)

    def open_envelope(self, pem: str | bytes) -> bytes:
        """Decrypt an envelope addressed to this identity (see :func:`open_envelope`)."""
        return open_envelope(pem, self.private_key, self.certificate)


# ----------------------------------------------------------------------- signatures


def sign(content: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """RSA-SHA256, PKCS#1 v1.5 signature over ``content`` (256 bytes for RSA-2048)."""
    return private_key.sign(bytes(content), padding.PKCS1v15(), hashes.SHA256())


def verify(content: bytes, signature: bytes, certificate: x509.Certificate) -> None:
    """Check an RSA-SHA256 (PKCS#1 v1.5) signature against the sender's certificate.

    :raises SignatureError: when the signature does not match the content.
    """
    public_key = _rsa_public_key(certificate)
    try:
        public_key.verify(bytes(signature), bytes(content), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError(
            f"The signature does not match the content for sender certificate "
            f"{_describe_certificate(certificate)}; the message was altered or signed "
            f"with another key, so check which certificate is configured for this sender."
        ) from None


def decode_signature(value: object) -> bytes:
    """Decode a signature as it may appear in a message document.

    Accepted forms:

    * ``bytes``, ``bytearray`` or ``memoryview``: used as is;
    * a Node ``Buffer`` after ``JSON.stringify``: ``{"type": "Buffer", "data": [...]}``;
    * a list (or tuple) of ints in 0..255;
    * a string, decoded by this rule:

      1. surrounding whitespace and embedded line breaks are ignored;
      2. a string of an even number of hex digits (optionally prefixed ``0x``) is
         **hex**;
      3. anything else is **base64**, standard or URL-safe alphabet, padding optional.

    Rule 2 is unambiguous in practice: a hex-looking string of ``2n`` characters
    would be ``1.5n`` bytes read as base64, and a real base64 signature consists of
    hex digits alone with probability ``(22/64) ** len`` (about ``1e-160`` for an
    RSA-2048 signature's 344 characters; *padded* base64 of 256 bytes ends in ``==``
    and so is never hex-shaped). It also does not assume a key size: hex for RSA-1024,
    2048, 3072 or 4096 signatures is read as hex.

    :raises MalformedSignatureError: (a :class:`SignatureError` and a
        :class:`MalformedPayloadError`) for anything else, or an empty signature.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        result = bytes(value)
    elif isinstance(value, Mapping):
        if value.get("type") != "Buffer" or not isinstance(value.get("data"), list):
            raise MalformedSignatureError(
                'A signature object must be a Node Buffer in JSON, {"type": "Buffer", '
                '"data": [byte values]}; send bytes, base64 or hex instead.'
            )
        result = _bytes_from_ints(value["data"])
    elif isinstance(value, list | tuple):
        result = _bytes_from_ints(value)
    elif isinstance(value, str):
        result = _bytes_from_text(value)
    elif value is None:
        raise MalformedSignatureError(
            "The message has no signature; sign the content with the sender's private key."
        )
    else:
        raise MalformedSignatureError(
            f"A signature cannot be a {type(value).__name__}; send bytes, a Node Buffer "
            f"object, a list of byte values, base64 or hex."
        )
    if not result:
        raise MalformedSignatureError(
            "The signature is empty; sign the content with the sender's private key."
        )
    return result


def _bytes_from_ints(values: Sequence[Any]) -> bytes:
    if not all(type(item) is int and 0 <= item <= 255 for item in values):
        raise MalformedSignatureError(
            "A signature given as a list must hold only integers 0..255 (byte values)."
        )
    return bytes(values)


def _bytes_from_text(value: str) -> bytes:
    text = "".join(value.split())
    hex_match = _HEX_SIGNATURE.fullmatch(text)
    if hex_match is not None:
        return bytes.fromhex(hex_match.group(1))
    if _BASE64_SIGNATURE.fullmatch(text) and len(text.rstrip("=")) % 4 != 1:
        unpadded = text.rstrip("=")
        padded = unpadded + "=" * (-len(unpadded) % 4)
        try:
            return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise MalformedSignatureError(
        "The signature string is neither hex nor base64; send the 256 signature bytes "
        "as base64, hex, or a Node Buffer object."
    )


# ------------------------------------------------------------------------ envelopes


def build_envelope(
    plaintext: bytes,
    certificate: x509.Certificate,
    encoding: EnvelopeEncoding = "ber",
) -> str:
    """Seal ``plaintext`` for the holder of ``certificate`` as a PKCS#7 PEM.

    EnvelopedData, AES-256-CBC content, RSA PKCS#1 v1.5 key transport, one recipient
    (issuer and serial number of ``certificate``). The bytes are encrypted unchanged
    (``PKCS7Options.Binary``: no LF to CRLF rewriting).

    :param encoding: ``"ber"`` (default) writes the encrypted content as
        node-forge does (constructed ``[0]`` wrapping one OCTET STRING) with CRLF PEM
        line endings, like the real service; ``"der"`` is ``cryptography``'s strict
        DER with LF line endings.
    :return: the PEM text, ``-----BEGIN PKCS7-----`` ... ``-----END PKCS7-----``.
    """
    if encoding not in ("ber", "der"):
        raise ValueError(f"Unknown envelope encoding {encoding!r}; use 'ber' or 'der'.")
    _rsa_public_key(certificate)
    der = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(bytes(plaintext))
        .add_recipient(certificate)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    if encoding == "der":
        return _to_pem(der, "PKCS7", "\n")
    return _to_pem(_reencode(der, constructed_content=True), "PKCS7", "\r\n")


def open_envelope(
    pem: str | bytes,
    private_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate | None = None,
) -> bytes:
    """Decrypt a PKCS#7 EnvelopedData PEM, in DER or node-forge's BER form.

    :param pem: the PEM text (``PKCS7`` or ``CMS`` label). Raw DER/BER bytes are
        accepted too.
    :param private_key: the recipient destination's private key.
    :param certificate: the recipient's certificate. Recommended: it is checked
        against the key and the envelope's recipient list, which makes a wrong key a
        certain :class:`WrongKeyError`. Without it a stand-in certificate is derived
        from the envelope's recipient info (``cryptography`` needs one to select the
        recipient); a wrong key is then noticed only by the failed decryption, which
        RSA implicit rejection lets through with garbage roughly once in a hundred
        times (the JSON parse of the plaintext then fails instead).
    :return: the plaintext bytes, unchanged.
    :raises PemError: for input that is not a readable PKCS#7 PEM (truncated, garbled,
        another PEM type).
    :raises MalformedPayloadError: for a PKCS#7 structure that is not a usable
        EnvelopedData (e.g. SignedData, unsupported cipher, corrupt ciphertext).
    :raises WrongKeyError: when the envelope was made for another key or certificate.
    """
    der = _envelope_der(pem)
    if certificate is not None:
        _rsa_public_key(certificate)
        if not _key_matches(private_key, certificate):
            raise WrongKeyError(
                f"The private key does not belong to the certificate "
                f"{_describe_certificate(certificate)}; configure the key and "
                f"certificate of the same destination."
            )
        # Fast path: strict DER decrypts as it is; anything else (node-forge's BER, or
        # an error to classify) goes through normalisation below.
        with contextlib.suppress(ValueError, UnsupportedAlgorithm):
            return pkcs7.pkcs7_decrypt_der(der, certificate, private_key, [])
    normalised = _normalise_envelope(der)
    if certificate is not None:
        with contextlib.suppress(ValueError, UnsupportedAlgorithm):
            return pkcs7.pkcs7_decrypt_der(normalised, certificate, private_key, [])
        recipients = _recipients(normalised)
        return _decrypt(normalised, certificate, private_key, recipients, certificate)
    recipients = _recipients(normalised)
    last: WrongKeyError | None = None
    if recipients and not _unwraps_content_key(normalised, private_key):
        addressed_to = ", ".join(r.describe() for r in recipients)
        raise WrongKeyError(
            f"The envelope could not be decrypted with the configured private key; it was "
            f"encrypted for {addressed_to}, so configure that destination's key (and pass "
            f"its certificate for a definite check)."
        )
    for recipient in recipients:
        stand_in = _stand_in_certificate(recipient, private_key)
        try:
            return _decrypt(normalised, stand_in, private_key, recipients, None)
        except WrongKeyError as exc:
            last = exc
    if last is None:
        raise MalformedPayloadError(
            "The PKCS#7 envelope names no recipient by issuer and serial number; it "
            "cannot be decrypted without a matching certificate, so pass the certificate."
        )
    raise last


@dataclass(frozen=True)
class _Recipient:
    issuer: Any  # asn1crypto.x509.Name, kept with its original encoding
    serial_number: int

    def describe(self) -> str:
        """``'CN=org2-external' (serial 0x1f...)``, like :func:`_describe_certificate`."""
        try:
            parts = [
                f"{_ATTRIBUTE_NAMES.get(attribute['type'].dotted, attribute['type'].dotted)}="
                f"{attribute['value'].native}"
                for rdn in reversed(list(self.issuer.chosen))
                for attribute in rdn
            ]
            issuer = ",".join(parts)
        except (ValueError, TypeError, KeyError, AttributeError):
            issuer = "<unreadable issuer>"
        return f"'{issuer}' (serial {self.serial_number:#x})"


def _envelope_der(pem: str | bytes) -> bytes:
    what = "PKCS#7 envelope"
    if isinstance(pem, bytes | bytearray | memoryview) and bytes(pem[:1]) == b"\x30":
        return bytes(pem)
    blocks = _pem_blocks(_pem_text(pem, what, _EXPECTED_ENVELOPE), what, _EXPECTED_ENVELOPE)
    return _pick_block(blocks, PEM_ENVELOPE_LABELS, what, _EXPECTED_ENVELOPE).der


def _normalise_envelope(der: bytes) -> bytes:
    """Check that ``der`` is a PKCS#7 EnvelopedData and return it as strict DER."""
    garbled = PemError(
        "The PKCS#7 envelope is truncated or garbled (its ASN.1 structure is incomplete); "
        "pass the complete PEM exactly as it was delivered."
    )
    try:
        class_, method, tag, _, contents, _ = _asn1_parser.parse(der, strict=True)
        if (class_, method, tag) != (_UNIVERSAL, _CONSTRUCTED, _TAG_SEQUENCE):
            raise garbled
        first = _split(contents)[0]
        oid_class, _, oid_tag, _, _, _ = _asn1_parser.parse(first, strict=True)
        if (oid_class, oid_tag) != (_UNIVERSAL, _TAG_OID):
            raise garbled
        content_type = str(_asn1_core.ObjectIdentifier.load(first).dotted)
    except (ValueError, TypeError, IndexError, RecursionError):
        raise garbled from None
    if content_type != _OID_ENVELOPED_DATA:
        name = _asn1_cms.ContentType.map(content_type)
        raise MalformedPayloadError(
            f"The PKCS#7 document is {name}, not EnvelopedData; App2App delivers "
            f"encrypted (enveloped) messages, so check what the sender produced."
        )
    try:
        return _reencode(der, constructed_content=False)
    except (ValueError, TypeError, IndexError, RecursionError):
        raise MalformedPayloadError(
            "The PKCS#7 EnvelopedData has an invalid ASN.1 layout and cannot be "
            "normalised to DER; check the sender's PKCS#7 library."
        ) from None


def _unwraps_content_key(der: bytes, private_key: rsa.RSAPrivateKey) -> bool:
    """Whether ``private_key`` unwraps a content key of the cipher's length.

    OpenSSL's RSA implicit rejection turns a wrong key into a pseudo-random (but
    deterministic) result instead of an error, and PKCS#7 decryption then goes on with
    a random key; checking the unwrapped key's length first makes a wrong key fail
    deterministically in all but about 1 in 500 envelopes, and those then fail the
    AES padding check in all but about 1 in 256.
    """
    try:
        enveloped = _asn1_cms.ContentInfo.load(der)["content"]
        key_length = int(
            enveloped["encrypted_content_info"]["content_encryption_algorithm"].key_length
        )
        wrapped = [
            bytes(info.chosen["encrypted_key"].native)
            for info in enveloped["recipient_infos"]
            if info.name == "ktri"
        ]
    except (ValueError, TypeError, KeyError):
        return True  # let the full decryption report what is wrong
    for encrypted_key in wrapped:
        try:
            if len(private_key.decrypt(encrypted_key, padding.PKCS1v15())) == key_length:
                return True
        except ValueError:
            continue
    return False


def _recipients(der: bytes) -> list[_Recipient]:
    try:
        content_info = _asn1_cms.ContentInfo.load(der)
        enveloped = content_info["content"]
        result: list[_Recipient] = []
        for info in enveloped["recipient_infos"]:
            if info.name != "ktri":
                continue
            rid = info.chosen["rid"]
            if rid.name != "issuer_and_serial_number":
                continue
            issuer_and_serial = rid.chosen
            result.append(
                _Recipient(
                    issuer_and_serial["issuer"], int(issuer_and_serial["serial_number"].native)
                )
            )
        return result
    except (ValueError, TypeError, KeyError):
        raise MalformedPayloadError(
            "The PKCS#7 EnvelopedData has unreadable recipient information; check the "
            "sender's PKCS#7 library."
        ) from None


def _decrypt(
    der: bytes,
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey,
    recipients: Sequence[_Recipient],
    given: x509.Certificate | None,
) -> bytes:
    try:
        return pkcs7.pkcs7_decrypt_der(der, certificate, private_key, [])
    except UnsupportedAlgorithm as exc:
        raise MalformedPayloadError(
            f"The PKCS#7 envelope uses an unsupported algorithm ({exc}); App2App "
            f"envelopes use AES-256-CBC with RSA PKCS#1 v1.5 key transport."
        ) from None
    except ValueError as exc:
        addressed_to = ", ".join(r.describe() for r in recipients) or "an unnamed recipient"
        if "No recipient found" in str(exc):
            mine = _describe_certificate(given) if given is not None else "this key"
            raise WrongKeyError(
                f"The envelope was encrypted for {addressed_to}, not for {mine}; "
                f"configure the key and certificate of the destination that received it."
            ) from None
        if given is None:
            # No certificate to check the key against: a failed unwrap or bad padding
            # is almost surely another recipient's envelope.
            raise WrongKeyError(
                f"The envelope could not be decrypted with the configured private key; "
                f"it was encrypted for {addressed_to}, so configure that destination's "
                f"key (and pass its certificate for a definite check)."
            ) from None
        raise MalformedPayloadError(
            f"The PKCS#7 envelope addressed to {addressed_to} could not be decrypted "
            f"with the matching key ({exc}); the ciphertext is corrupt, so ask the "
            f"sender to resend."
        ) from None


def _stand_in_certificate(
    recipient: _Recipient, private_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    """A self-signed certificate for ``private_key`` with the recipient's issuer and serial.

    ``pkcs7_decrypt_der`` selects the recipient by the certificate's issuer and serial
    number only, so this lets :func:`open_envelope` work from a private key alone. The
    issuer Name is copied with its original encoding (node-forge writes
    PrintableString, ``cryptography`` UTF8String) so that it compares equal.
    """
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tbs = _asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": recipient.serial_number,
            "signature": {"algorithm": "sha256_rsa"},
            "issuer": recipient.issuer,
            "validity": {
                "not_before": _asn1_x509.Time(
                    name="utc_time",
                    value=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc),
                ),
                "not_after": _asn1_x509.Time(
                    name="utc_time",
                    value=datetime.datetime(2049, 12, 31, tzinfo=datetime.timezone.utc),
                ),
            },
            "subject": recipient.issuer,
            "subject_public_key_info": _asn1_keys.PublicKeyInfo.load(spki),
        }
    )
    signature = private_key.sign(tbs.dump(), padding.PKCS1v15(), hashes.SHA256())
    certificate = _asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": "sha256_rsa"},
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(certificate.dump())


# ------------------------------------------------------------------ BER <-> DER rewriting


def _split(contents: bytes) -> list[bytes]:
    """The encoded children of a constructed value's contents, in order."""
    children: list[bytes] = []
    offset = 0
    while offset < len(contents):
        rest = contents[offset:]
        length = int(_asn1_parser.peek(rest))
        children.append(rest[:length])
        offset += length
    return children


def _string_octets(method: int, contents: bytes, depth: int) -> bytes:
    """The octets of an OCTET STRING (or IMPLICIT one) in primitive or constructed form."""
    if method == _PRIMITIVE:
        return contents
    if depth > _MAX_DEPTH:
        raise ValueError("ASN.1 nesting too deep")
    octets: list[bytes] = []
    for child in _split(contents):
        class_, child_method, tag, _, child_contents, _ = _asn1_parser.parse(child, strict=True)
        if (class_, tag) != (_UNIVERSAL, _TAG_OCTET_STRING):
            raise ValueError("a constructed OCTET STRING may only hold OCTET STRINGs")
        octets.append(_string_octets(child_method, child_contents, depth + 1))
    return b"".join(octets)


def _reencode(
    encoded: bytes,
    *,
    constructed_content: bool,
    path: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """Re-emit a ContentInfo with definite minimal lengths, choosing the content form.

    Every constructed value is rebuilt from its re-emitted children, every
    constructed universal OCTET STRING is folded into a primitive one, and the
    EnvelopedData's encrypted content ``[0]`` is written primitive (DER) or, with
    ``constructed_content``, as node-forge writes it: ``A0 len 04 len octets``.
    On DER input with ``constructed_content=False`` the output equals the input.
    """
    if len(path) > _MAX_DEPTH:
        raise ValueError("ASN.1 nesting too deep")
    class_, method, tag, _, contents, _ = _asn1_parser.parse(encoded, strict=True)
    here = (*path, (class_, tag))
    if here == _ENCRYPTED_CONTENT_PATH:
        octets = _string_octets(method, contents, len(here))
        if constructed_content:
            inner = _asn1_parser.emit(_UNIVERSAL, _PRIMITIVE, _TAG_OCTET_STRING, octets)
            return bytes(_asn1_parser.emit(class_, _CONSTRUCTED, tag, inner))
        return bytes(_asn1_parser.emit(class_, _PRIMITIVE, tag, octets))
    if method == _PRIMITIVE:
        return bytes(_asn1_parser.emit(class_, _PRIMITIVE, tag, contents))
    if (class_, tag) == (_UNIVERSAL, _TAG_OCTET_STRING):
        octets = _string_octets(method, contents, len(here))
        return bytes(_asn1_parser.emit(class_, _PRIMITIVE, tag, octets))
    children = [
        _reencode(child, constructed_content=constructed_content, path=here)
        for child in _split(contents)
    ]
    return bytes(_asn1_parser.emit(class_, _CONSTRUCTED, tag, b"".join(children)))


def _to_pem(der: bytes, label: str, newline: str) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [f"-----BEGIN {label}-----"]
    lines += [body[index : index + 64] for index in range(0, len(body), 64)]
    lines.append(f"-----END {label}-----")
    return newline.join(lines) + newline
