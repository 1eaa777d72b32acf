"""The crypto promise: signatures and PKCS#7 envelopes interoperate with the vendor.

Checked here: RSA-SHA256 signatures round-trip and reject tampering; the committed
node-forge vector (``tests/vectors/node_forge``), which ``cryptography`` refuses as it
is, decrypts to its exact plaintext and its signature verifies; our ``"ber"`` envelopes
have node-forge's constructed ``[0]`` layout and ``"der"`` ones are strict DER, both
round-trip any bytes unchanged (no LF to CRLF); wrong keys, damaged PEMs and
non-envelopes fail with the right typed, readable errors that carry no key material;
signatures decode from every form a message may carry.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from asn1crypto import parser as asn1_parser
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_app2app.protocol import crypto
from airflow_provider_app2app.protocol.crypto import (
    Identity,
    MalformedSignatureError,
    build_envelope,
    decode_signature,
    generate_identity,
    load_certificate,
    load_private_key,
    open_envelope,
    sign,
    verify,
)
from airflow_provider_app2app.protocol.errors import (
    MalformedPayloadError,
    PemError,
    SignatureError,
    WrongKeyError,
)

VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "node_forge"

# Generated once: RSA key generation is the slow part of these tests.
_KEY_PEM, _CERT_PEM = generate_identity("org1-test-external")
IDENTITY = Identity.from_pem(_KEY_PEM, _CERT_PEM)
_OTHER_KEY_PEM, _OTHER_CERT_PEM = generate_identity("org9-other-external")
OTHER = Identity.from_pem(_OTHER_KEY_PEM, _OTHER_CERT_PEM)


def _vector(name: str) -> bytes:
    return (VECTOR / name).read_bytes()


@pytest.fixture(scope="module")
def forge_recipient() -> Identity:
    return Identity.from_pem(_vector("recipient_key.pem"), _vector("recipient_cert.pem"))


@pytest.fixture(scope="module")
def forge_sender() -> Identity:
    return Identity.from_pem(_vector("sender_key.pem"), _vector("sender_cert.pem"))


def _pem_der(pem: str | bytes) -> bytes:
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    body = [line for line in text.splitlines() if line and not line.startswith("-----")]
    return base64.b64decode("".join(body))


def _children(contents: bytes) -> list[bytes]:
    result = []
    while contents:
        length = asn1_parser.peek(contents)
        result.append(contents[:length])
        contents = contents[length:]
    return result


def _encrypted_content_layout(der: bytes) -> tuple[str, list[tuple[int, int, int]]]:
    """(header form of encryptedContent [0], (class, method, tag) of what it holds)."""
    _, _, _, _, content_info, _ = asn1_parser.parse(der)
    explicit = _children(content_info)[1]
    enveloped = asn1_parser.parse(asn1_parser.parse(explicit)[4])[4]
    encrypted_content_info = _children(enveloped)[-1]
    encrypted_content = _children(asn1_parser.parse(encrypted_content_info)[4])[-1]
    class_, method, tag, _, contents, _ = asn1_parser.parse(encrypted_content)
    assert (class_, tag) == (2, 0)
    if method == 0:
        return "primitive", []
    inner = [asn1_parser.parse(child)[:3] for child in _children(contents)]
    return "constructed", inner


def _to_indefinite_ber(der: bytes) -> bytes:
    """Re-encode DER as OpenSSL's streaming BER: indefinite lengths, content in chunks."""

    def walk(encoded: bytes, depth: int) -> bytes:
        class_, method, tag, _, contents, _ = asn1_parser.parse(encoded)
        if class_ == 2 and tag == 0 and method == 0 and depth == 4:
            chunks = b"".join(
                asn1_parser.emit(0, 0, 4, contents[i : i + 7]) for i in range(0, len(contents), 7)
            )
            return bytes([0xA0, 0x80]) + chunks + b"\x00\x00"
        if method == 0:
            return encoded
        inner = b"".join(walk(child, depth + 1) for child in _children(contents))
        identifier = asn1_parser.emit(class_, 1, tag, b"")[:1]
        return identifier + b"\x80" + inner + b"\x00\x00"

    return walk(der, 0)


# ------------------------------------------------------------------------- signatures


def test_signature_made_by_sign_verifies_with_the_matching_certificate():
    signature = sign(b"content bytes", IDENTITY.private_key)
    assert len(signature) == 256
    verify(b"content bytes", signature, IDENTITY.certificate)


def test_tampered_signature_raises_signature_error():
    signature = bytearray(sign(b"content bytes", IDENTITY.private_key))
    signature[10] ^= 0x01
    with pytest.raises(SignatureError, match="does not match"):
        verify(b"content bytes", bytes(signature), IDENTITY.certificate)


def test_tampered_content_raises_signature_error_naming_the_certificate():
    signature = sign(b"content bytes", IDENTITY.private_key)
    with pytest.raises(SignatureError, match="does not match") as caught:
        verify(b"content bytes!", signature, IDENTITY.certificate)
    assert "CN=org1-test-external" in str(caught.value)


def test_signature_from_another_key_raises_signature_error():
    signature = sign(b"content bytes", OTHER.private_key)
    with pytest.raises(SignatureError):
        verify(b"content bytes", signature, IDENTITY.certificate)


def test_python_signature_equals_node_forge_signature_byte_for_byte(forge_sender):
    document = json.loads(_vector("plaintext.json"))
    forge_signature = bytes(document["headers"]["signature"]["data"])
    assert sign(document["content"].encode("utf-8"), forge_sender.private_key) == forge_signature


# --------------------------------------------------------------- the node-forge vector


def test_cryptography_alone_refuses_the_node_forge_envelope(forge_recipient):
    """Proves that the vector exercises the BER path: DER-strict parsing fails on it."""
    der = _pem_der(_vector("envelope.pem"))
    with pytest.raises(ValueError, match="ExtraData"):
        pkcs7.pkcs7_decrypt_der(der, forge_recipient.certificate, forge_recipient.private_key, [])


def test_node_forge_envelope_has_a_constructed_encrypted_content():
    layout = _encrypted_content_layout(_pem_der(_vector("envelope.pem")))
    assert layout == ("constructed", [(0, 0, 4)])


def test_node_forge_envelope_decrypts_to_the_exact_plaintext(forge_recipient):
    plaintext = open_envelope(
        _vector("envelope.pem"), forge_recipient.private_key, forge_recipient.certificate
    )
    assert plaintext == _vector("plaintext.json")


def test_node_forge_envelope_decrypts_from_text_and_without_a_certificate(forge_recipient):
    pem_text = _vector("envelope.pem").decode("ascii")
    assert open_envelope(pem_text, forge_recipient.private_key) == _vector("plaintext.json")


def test_node_forge_message_signature_verifies_against_sender_certificate(forge_recipient):
    plaintext = forge_recipient.open_envelope(_vector("envelope.pem"))
    document = json.loads(plaintext)
    signature = decode_signature(document["headers"]["signature"])
    sender_certificate = load_certificate(_vector("sender_cert.pem"))
    verify(document["content"].encode("utf-8"), signature, sender_certificate)


# ----------------------------------------------------------------------- our envelopes


def test_ber_envelope_has_node_forge_layout_and_line_endings():
    pem = build_envelope(b"payload", IDENTITY.certificate)
    forge_pem = _vector("envelope.pem").decode("ascii")
    assert pem.startswith("-----BEGIN PKCS7-----\r\n")
    assert pem.endswith("-----END PKCS7-----\r\n")
    assert _encrypted_content_layout(_pem_der(pem)) == _encrypted_content_layout(
        _pem_der(forge_pem)
    )
    assert max(len(line) for line in pem.split("\r\n")) == 64


def test_der_envelope_is_strict_der_that_cryptography_decrypts_directly():
    pem = build_envelope(b"payload", IDENTITY.certificate, "der")
    assert pem.startswith("-----BEGIN PKCS7-----\n")
    assert "\r" not in pem
    der = _pem_der(pem)
    assert _encrypted_content_layout(der) == ("primitive", [])
    assert pkcs7.pkcs7_decrypt_der(der, IDENTITY.certificate, IDENTITY.private_key, []) == (
        b"payload"
    )


def test_der_normalisation_leaves_strict_der_unchanged():
    der = _pem_der(build_envelope(b"payload", IDENTITY.certificate, "der"))
    assert crypto._reencode(der, constructed_content=False) == der


@pytest.mark.parametrize("encoding", ["ber", "der"])
def test_envelope_round_trips_with_and_without_certificate(encoding):
    pem = build_envelope(b"hello\nworld\n", IDENTITY.certificate, encoding)
    assert open_envelope(pem, IDENTITY.private_key, IDENTITY.certificate) == b"hello\nworld\n"
    assert open_envelope(pem, IDENTITY.private_key) == b"hello\nworld\n"
    assert open_envelope(pem.encode("ascii"), IDENTITY.private_key) == b"hello\nworld\n"


def test_envelope_round_trips_as_raw_der_bytes():
    der = _pem_der(build_envelope(b"raw", IDENTITY.certificate))
    assert open_envelope(der, IDENTITY.private_key, IDENTITY.certificate) == b"raw"


def test_indefinite_length_ber_as_openssl_streams_it_is_decrypted():
    der = _pem_der(build_envelope(b"streamed content " * 5, IDENTITY.certificate, "der"))
    ber = _to_indefinite_ber(der)
    pem = "-----BEGIN CMS-----\n" + base64.encodebytes(ber).decode() + "-----END CMS-----\n"
    assert open_envelope(pem, IDENTITY.private_key, IDENTITY.certificate) == (
        b"streamed content " * 5
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=st.binary(max_size=4096), encoding=st.sampled_from(["ber", "der"]))
def test_any_bytes_round_trip_unchanged_through_an_envelope(plaintext, encoding):
    pem = build_envelope(plaintext, IDENTITY.certificate, encoding)
    assert open_envelope(pem, IDENTITY.private_key, IDENTITY.certificate) == plaintext


@settings(max_examples=15, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"")), max_size=10),
    encoding=st.sampled_from(["ber", "der"]),
)
def test_line_feeds_are_not_rewritten_to_crlf(lines, encoding):
    plaintext = b"\n".join(lines) + b"\n"
    pem = build_envelope(plaintext, IDENTITY.certificate, encoding)
    opened = open_envelope(pem, IDENTITY.private_key, IDENTITY.certificate)
    assert opened == plaintext
    assert opened.count(b"\r\n") == 0


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="'ber' or 'der'"):
        build_envelope(b"x", IDENTITY.certificate, "pem")  # type: ignore[arg-type]


# --------------------------------------------------------------------- envelope errors


def test_envelope_for_another_certificate_raises_wrong_key_error_naming_both():
    pem = build_envelope(b"secret", IDENTITY.certificate)
    with pytest.raises(WrongKeyError) as caught:
        open_envelope(pem, OTHER.private_key, OTHER.certificate)
    message = str(caught.value)
    assert "CN=org1-test-external" in message
    assert "CN=org9-other-external" in message
    assert "BEGIN" not in message


def test_wrong_key_without_certificate_raises_wrong_key_error(forge_sender):
    # A fixed envelope and a fixed wrong key keep this deterministic (see open_envelope).
    with pytest.raises(WrongKeyError, match="could not be decrypted") as caught:
        open_envelope(_vector("envelope.pem"), forge_sender.private_key)
    assert "CN=org2-external" in str(caught.value)


def test_key_that_does_not_belong_to_the_certificate_raises_wrong_key_error():
    pem = build_envelope(b"secret", IDENTITY.certificate)
    with pytest.raises(WrongKeyError, match="does not belong"):
        open_envelope(pem, OTHER.private_key, IDENTITY.certificate)


def _truncations() -> list[str]:
    pem = build_envelope(b"payload" * 20, IDENTITY.certificate, "der")
    lines = pem.splitlines()
    return [
        pem[: len(pem) // 2],  # cut mid-body: no END line
        "\n".join(lines[:-3] + lines[-1:]) + "\n",  # body lines lost, END line kept
        "\n".join(lines[:3] + lines[-1:]) + "\n",
    ]


@pytest.mark.parametrize("damaged", _truncations(), ids=["no-end", "tail-lost", "most-lost"])
def test_truncated_envelope_pem_raises_pem_error(damaged):
    with pytest.raises(PemError, match="truncated"):
        open_envelope(damaged, IDENTITY.private_key, IDENTITY.certificate)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello, world",
        b"\x00\xff\xfe garbage",
        b"\x30\x03\x02\x01",
        "-----BEGIN PKCS7-----\n!!!! not base64 !!!!\n-----END PKCS7-----\n",
        "-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n",
        _CERT_PEM,
        12345,
    ],
    ids=["empty", "text", "binary", "short-der", "bad-base64", "not-asn1", "cert", "int"],
)
def test_garbage_envelope_raises_pem_error(garbage):
    with pytest.raises(PemError) as caught:
        open_envelope(garbage, IDENTITY.private_key, IDENTITY.certificate)
    assert "PKCS" in str(caught.value)


def test_signed_data_is_not_an_envelope():
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"signed, not encrypted")
        .add_signer(IDENTITY.certificate, IDENTITY.private_key, hashes.SHA256())
        .sign(serialization.Encoding.PEM, [pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(MalformedPayloadError, match="not EnvelopedData"):
        open_envelope(signed, IDENTITY.private_key, IDENTITY.certificate)


def test_corrupted_ciphertext_raises_malformed_payload_error():
    der = bytearray(_pem_der(build_envelope(b"x" * 64, IDENTITY.certificate, "der")))
    der[-1] ^= 0xFF  # last byte of the last ciphertext block: breaks the padding
    with pytest.raises(MalformedPayloadError, match="corrupt"):
        open_envelope(bytes(der), IDENTITY.private_key, IDENTITY.certificate)


# ------------------------------------------------------------------ decode_signature

SIGNATURE = sign(b"content", IDENTITY.private_key)


@pytest.mark.parametrize(
    "value",
    [
        SIGNATURE,
        bytearray(SIGNATURE),
        memoryview(SIGNATURE),
        {"type": "Buffer", "data": list(SIGNATURE)},
        list(SIGNATURE),
        tuple(SIGNATURE),
        SIGNATURE.hex(),
        SIGNATURE.hex().upper(),
        "0x" + SIGNATURE.hex(),
        base64.b64encode(SIGNATURE).decode(),
        base64.urlsafe_b64encode(SIGNATURE).decode().rstrip("="),
        base64.encodebytes(SIGNATURE).decode(),  # with line breaks
        "  " + base64.b64encode(SIGNATURE).decode() + "\n",
    ],
    ids=[
        "bytes",
        "bytearray",
        "memoryview",
        "node-buffer",
        "list",
        "tuple",
        "hex",
        "HEX",
        "0x-hex",
        "base64",
        "base64url-unpadded",
        "base64-wrapped",
        "base64-padded-with-space",
    ],
)
def test_decode_signature_accepts_every_form(value):
    assert decode_signature(value) == SIGNATURE


def test_decode_signature_reads_hex_of_other_key_sizes_as_hex():
    # 128 bytes (RSA-1024): as base64 the same 256 characters would give 192 bytes.
    short = bytes(range(128))
    assert decode_signature(short.hex()) == short


def test_decode_signature_reads_base64_that_is_not_even_length_hex():
    assert decode_signature("AAECAw==") == b"\x00\x01\x02\x03"  # not hex digits only
    assert decode_signature("abc") == b"i\xb7"  # hex digits, odd length -> base64


def test_decoded_node_forge_signature_is_256_bytes():
    document = json.loads(_vector("plaintext.json"))
    assert len(decode_signature(document["headers"]["signature"])) == 256


@pytest.mark.parametrize(
    "value",
    [
        None,
        12,
        1.5,
        "",
        "   ",
        "not a signature!",
        "A",
        [],
        [256],
        [-1],
        [True, False],
        ["1"],
        {"type": "Buffer"},
        {"type": "Uint8Array", "data": [1, 2]},
        {"data": [1, 2]},
        b"",
    ],
)
def test_decode_signature_rejects_other_shapes(value):
    with pytest.raises(MalformedSignatureError) as caught:
        decode_signature(value)
    assert isinstance(caught.value, SignatureError)
    assert isinstance(caught.value, MalformedPayloadError)


# ---------------------------------------------------------------- keys & certificates


def test_private_key_loads_from_pkcs8_and_pkcs1():
    assert "BEGIN PRIVATE KEY" in _KEY_PEM
    pkcs8 = load_private_key(_KEY_PEM)
    assert "BEGIN RSA PRIVATE KEY" in _vector("recipient_key.pem").decode()
    pkcs1 = load_private_key(_vector("recipient_key.pem"))
    assert pkcs8.key_size == pkcs1.key_size == 2048


def test_private_key_loads_with_escaped_newlines_and_indentation():
    escaped = _KEY_PEM.strip().replace("\n", "\\n")
    indented = "\n".join("    " + line for line in _KEY_PEM.splitlines())
    for variant in (escaped, indented, _KEY_PEM.replace("\n", "\r\n")):
        key = load_private_key(variant)
        assert (
            key.public_key().public_numbers() == IDENTITY.private_key.public_key().public_numbers()
        )


def test_private_key_is_found_in_a_bundle_with_the_certificate():
    assert isinstance(load_private_key(_CERT_PEM + _KEY_PEM), type(IDENTITY.private_key))
    assert load_certificate(_KEY_PEM + _CERT_PEM) == IDENTITY.certificate


def _key_body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_encrypted_private_key_raises_pem_error_saying_so():
    encrypted = IDENTITY.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(PemError, match="encrypted"):
        load_private_key(encrypted)
    legacy = IDENTITY.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(PemError, match="encrypted"):
        load_private_key(legacy)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (_CERT_PEM, "'CERTIFICATE' PEM data; expected an unencrypted RSA private key"),
        ("not a key", "not PEM"),
        ("", "not PEM"),
        (_KEY_PEM[: len(_KEY_PEM) // 2], "truncated"),
        (None, "must be PEM text"),
    ],
    ids=["certificate", "text", "empty", "truncated", "none"],
)
def test_unusable_private_key_raises_pem_error_saying_what_was_expected(value, expected):
    with pytest.raises(PemError, match=expected) as caught:
        load_private_key(value)
    for line in _key_body_lines(_KEY_PEM):
        assert line not in str(caught.value)


def test_private_key_with_lost_body_lines_raises_pem_error_without_key_material():
    lines = _KEY_PEM.splitlines()
    damaged = "\n".join(lines[:1] + lines[2:-3] + lines[-1:])
    with pytest.raises(PemError, match="garbled or truncated") as caught:
        load_private_key(damaged)
    assert caught.value.__cause__ is None
    for line in _key_body_lines(_KEY_PEM):
        assert line not in str(caught.value)


def test_elliptic_curve_key_raises_pem_error_asking_for_rsa():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(PemError, match="RSA"):
        load_private_key(pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(IDENTITY.certificate.not_valid_before_utc)
        .not_valid_after(IDENTITY.certificate.not_valid_after_utc)
        .sign(ec_key, hashes.SHA256())
    )
    with pytest.raises(PemError, match="RSA"):
        load_certificate(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    "value",
    ["", "garbage", _KEY_PEM, _CERT_PEM[: len(_CERT_PEM) // 2], _CERT_PEM.replace("M", "A", 5)],
    ids=["empty", "text", "private-key", "truncated", "garbled"],
)
def test_unusable_certificate_raises_pem_error(value):
    with pytest.raises(PemError, match="certificate"):
        load_certificate(value)


def test_generated_identity_is_pkcs8_with_a_matching_self_signed_certificate():
    certificate = IDENTITY.certificate
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == ["org1-test-external"]
    assert certificate.issuer == certificate.subject
    assert IDENTITY.private_key.key_size == 2048
    assert "ENCRYPTED" not in _KEY_PEM
    certificate.verify_directly_issued_by(certificate)


def test_identity_rejects_a_key_that_does_not_belong_to_the_certificate():
    with pytest.raises(PemError, match="does not belong") as caught:
        Identity.from_pem(_OTHER_KEY_PEM, _CERT_PEM)
    assert "CN=org1-test-external" in str(caught.value)
