"""The environment configuration: the demo environment and TOML config files.

The demo environment is generated once and read back unchanged; a TOML file defines
memberships, credentials and destinations; every mistake in it is reported in one
sentence naming the place and the fix.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airflow_provider_app2app.emulator.config import (
    DEMO_CONFIG_NAME,
    EmulatorConfigError,
    load_config,
    load_environment,
)
from airflow_provider_app2app.protocol.crypto import generate_identity, load_private_key


def test_demo_environment_is_built_once_and_kept(tmp_path):
    first = load_environment(tmp_path)
    text = (tmp_path / DEMO_CONFIG_NAME).read_text()
    second = load_environment(tmp_path)
    assert first == second and first.demo
    assert (tmp_path / DEMO_CONFIG_NAME).read_text() == text
    assert [m.id for m in first.memberships] == ["org1", "org2"]
    assert [(c.username, c.membership) for c in first.credentials] == [
        ("org1-app", "org1"),
        ("org2-app", "org2"),
    ]
    assert first.credentials[0].password != first.credentials[1].password
    assert [(d.name, d.kaleido_managed) for d in first.destinations] == [
        ("org1-managed", True),
        ("org1-external", False),
        ("org2-managed", True),
        ("org2-external", False),
    ]


def test_demo_external_destinations_have_matching_key_and_certificate(tmp_path):
    environment = load_environment(tmp_path)
    external = environment.destination("kld://app2app/m/org2/e/local/s/app2app/d/org2-external")
    assert external is not None and external.certificate is not None
    assert external.private_key_path is not None
    key = load_private_key(external.private_key_path.read_bytes())
    assert key.key_size == 2048
    assert key.public_key().public_numbers() == external.certificate.public_key().public_numbers()
    assert stat.S_IMODE(external.private_key_path.stat().st_mode) == 0o600


def test_passwords_do_not_appear_in_reprs(tmp_path):
    environment = load_environment(tmp_path)
    for credential in environment.credentials:
        assert credential.password not in repr(environment)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_file_with_custom_uris_and_relative_certificate(tmp_path):
    _, cert_pem = generate_identity("partner")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "p.pem").write_text(cert_pem)
    config = write(
        tmp_path / "env.toml",
        """
[environment]
id = "e0"
service = "s0"

[[memberships]]
id = "alpha"
[[memberships.credentials]]
username = "alpha-1"
password = "pw1"
[[memberships.credentials]]
username = "alpha-2"
password = "pw2"
[[memberships.destinations]]
name = "inbox"
[[memberships.destinations]]
name = "vault"
kaleido_managed = false
certificate = "certs/p.pem"
uri = "kld://app2app/m/alpha/e/e0/s/s0/z/zone1/d/vault"
""",
    )
    environment = load_config(config)
    assert environment.destinations[0].uri == "kld://app2app/m/alpha/e/e0/s/s0/d/inbox"
    vault = environment.destinations[1]
    assert vault.uri.endswith("/z/zone1/d/vault")
    assert vault.certificate_path == (tmp_path / "certs" / "p.pem").resolve()
    assert vault.private_key_path is None
    assert len(environment.credentials_of("alpha")) == 2
    assert not environment.demo


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "define at least one [[memberships]]"),
        ('[[memberships]]\nid = "a b"\n', "membership id 'a b' must be letters"),
        ('[[memberships]]\nid = "a"\n', "define at least one app credential"),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u:x"\n'
            'password = "p"\n',
            "must not contain ':'",
        ),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n',
            "'password' must be a non-empty string",
        ),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n'
            'password = "p"\n[[memberships.destinations]]\nname = "' + "x" * 45 + '"\n',
            "must be 1-44 characters",
        ),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n'
            'password = "p"\n[[memberships.destinations]]\nname = "d"\n'
            "kaleido_managed = false\n",
            "needs 'certificate'",
        ),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n'
            'password = "p"\n[[memberships.destinations]]\nname = "d"\n'
            'kaleido_managed = false\ncertificate = "missing.pem"\n',
            "cannot read certificate",
        ),
        (
            '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n'
            'password = "p"\n[[memberships.destinations]]\nname = "d"\n'
            '[[memberships.destinations]]\nname = "d"\n',
            "is defined twice",
        ),
        ("memberships = 3\n", "must be an array of tables"),
        ("[[memberships]\n", "not valid TOML"),
    ],
    ids=[
        "empty",
        "bad-member-id",
        "no-credential",
        "colon-username",
        "no-password",
        "long-name",
        "external-without-cert",
        "missing-cert-file",
        "duplicate-destination",
        "memberships-not-tables",
        "not-toml",
    ],
)
def test_config_mistakes_are_named(tmp_path, body, fragment):
    config = write(tmp_path / "bad.toml", body)
    with pytest.raises(EmulatorConfigError) as error:
        load_config(config)
    assert fragment in str(error.value)


def test_garbage_certificate_is_reported_with_its_path(tmp_path):
    write(tmp_path / "junk.pem", "not a certificate")
    config = write(
        tmp_path / "env.toml",
        '[[memberships]]\nid = "a"\n[[memberships.credentials]]\nusername = "u"\n'
        'password = "p"\n[[memberships.destinations]]\nname = "d"\n'
        'kaleido_managed = false\ncertificate = "junk.pem"\n',
    )
    with pytest.raises(EmulatorConfigError, match=r"junk\.pem is not usable"):
        load_config(config)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(EmulatorConfigError, match="Cannot read config file"):
        load_environment(tmp_path, tmp_path / "nope.toml")
