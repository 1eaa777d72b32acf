"""Decrypt + verify per message: the client's decode path vs raw ``cryptography`` calls.

For N envelopes of a 1 KiB signed message (sealed as the service seals them), the
client path is ``MessageDecoder.decode`` (PEM parse, envelope normalisation, RSA
key unwrap, AES-256-CBC, JSON, signature check, ``ReceivedMessage``); the raw path is
the least a hand-written consumer must do with ``cryptography`` for the same
result: ``pkcs7_decrypt_der`` on the DER, ``json.loads``, and an RSA-SHA256
``verify``. Raw ``cryptography`` cannot open the vendor's BER envelopes at all, so
the ratio is measured on DER envelopes; the BER figure of the client is shown too.

Run: ``.venv/bin/python benchmarks/bench_client_decode.py [--messages N]``; prints a
markdown table (ratio = client / raw time per message, aim <= 1.2).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402

from airflow_provider_app2app.client import ClientSettings, Identity  # noqa: E402
from airflow_provider_app2app.client.decoding import MessageDecoder  # noqa: E402
from airflow_provider_app2app.protocol.crypto import build_envelope  # noqa: E402
from airflow_provider_app2app.protocol.messages import delivery_document  # noqa: E402

SENDER = "kld://app2app/m/org1/e/bench/s/app2app/d/sender"
RECIPIENT = "kld://app2app/m/org2/e/bench/s/app2app/d/recipient"


def envelopes(count: int, recipient: Identity, sender: Identity, encoding: str) -> list[str]:
    sealed = []
    for index in range(count):
        content = (f"{index:08d}" + "x" * 1016).encode()
        document = delivery_document(SENDER, RECIPIENT, content, sender.sign(content))
        sealed.append(
            build_envelope(json.dumps(document).encode(), recipient.certificate, encoding)
        )
    return sealed


def raw_decode(pem: str, recipient: Identity, sender_public_key) -> bytes:
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    plaintext = pkcs7.pkcs7_decrypt_der(der, recipient.certificate, recipient.private_key, [])
    document = json.loads(plaintext)
    content = document["content"].encode()
    signature = bytes(document["headers"]["signature"]["data"])
    sender_public_key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    return content


def per_message(function, items) -> float:
    started = time.perf_counter()
    for item in items:
        function(item)
    return (time.perf_counter() - started) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    recipient, sender = Identity.generate("recipient"), Identity.generate("sender")
    settings = ClientSettings(
        endpoint="ws://127.0.0.1:1/api/v1",
        username="bench",
        password="bench",
        identities={RECIPIENT: recipient},
        peer_certificates={SENDER: sender.certificate},
    )
    decoder = MessageDecoder(settings)
    der = envelopes(args.messages, recipient, sender, "der")
    ber = envelopes(args.messages, recipient, sender, "ber")
    public_key = sender.certificate.public_key()
    assert serialization  # imported for readers who adapt the raw path to PEM keys

    def client(pem: str) -> bytes:
        message = decoder.decode(pem, "k", 1, [RECIPIENT])
        assert message.signature_status == "verified"
        return message.content

    assert client(der[0]) == raw_decode(der[0], recipient, public_key)
    raw_times, client_times, ber_times, ratios = [], [], [], []
    for _ in range(args.rounds):
        raw_t = per_message(lambda pem: raw_decode(pem, recipient, public_key), der)
        client_t = per_message(client, der)
        raw_times.append(raw_t)
        client_times.append(client_t)
        ratios.append(client_t / raw_t)
        ber_times.append(per_message(client, ber))
    print(
        "| benchmark | messages x rounds | raw cryptography ms/msg (DER) | "
        "client ms/msg (DER) | client ms/msg (BER) | median ratio (DER) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| decrypt + verify, 1 KiB signed | {args.messages} x {args.rounds} | "
        f"{min(raw_times) * 1e3:.3f} | {min(client_times) * 1e3:.3f} | "
        f"{min(ber_times) * 1e3:.3f} | {statistics.median(ratios):.2f}x |"
    )


if __name__ == "__main__":
    main()
