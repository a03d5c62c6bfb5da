"""credentials: the keychain through keyring, and a loud refusal when it is not secure.

Backends are real keyring backends installed with keyring.set_keyring() (tests/cli/keyrings.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from tests.cli.keyrings import MemoryKeyring
from traystatus.core.config import credentials


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


@pytest.fixture
def memory(restore_keyring: None) -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


class PlaintextKeyring(MemoryKeyring):
    """Stands for keyrings.alt.file.PlaintextKeyring (same module name, same verdict)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


def test_store_get_delete(memory: MemoryKeyring) -> None:
    credentials.store_password("prod", "pw1")
    assert memory.entries == {("traystatus", "prod"): "pw1"}
    assert credentials.get_password("prod") == "pw1"
    assert credentials.get_password("other") is None
    assert credentials.delete_password("prod") is True
    assert credentials.delete_password("prod") is False
    assert memory.entries == {}


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (fail.Keyring(), "no keychain service was found"),
        (null.Keyring(), "null backend"),
        (PlaintextKeyring(), "keyrings.alt"),
    ],
    ids=["fail", "null", "keyrings.alt"],
)
def test_insecure_backends_are_refused(
    restore_keyring: None, backend: KeyringBackend, why: str
) -> None:
    keyring.set_keyring(backend)
    info = credentials.keychain_info()
    assert not info.secure and why in info.reason
    with pytest.raises(credentials.NoSecureKeychain) as caught:
        credentials.store_password("prod", "pw1")
    message = str(caught.value)
    assert why in message
    assert "gnome-keyring" in message and "~/.pgpass" in message
    assert credentials.get_password("prod") is None  # never read from an insecure store
    if isinstance(backend, PlaintextKeyring):
        assert backend.entries == {}  # and never written to it


def test_chainer_without_backends_is_not_secure(
    restore_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    info = credentials.keychain_info(chainer.ChainerBackend())
    assert not info.secure and "no backends" in info.reason


def test_chainer_with_a_plaintext_member_is_not_secure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [MemoryKeyring(), PlaintextKeyring()])
    assert not credentials.keychain_info(chainer.ChainerBackend()).secure
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [MemoryKeyring()])
    assert credentials.keychain_info(chainer.ChainerBackend()).secure


class LockedKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("the collection is locked")


def test_a_keychain_that_refuses_is_reported(restore_keyring: None) -> None:
    keyring.set_keyring(LockedKeyring())
    with pytest.raises(credentials.NoSecureKeychain, match="refused to store it"):
        credentials.store_password("prod", "pw1")
