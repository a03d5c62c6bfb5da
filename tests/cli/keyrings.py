"""Small real keyring backends for the tests (installed with keyring.set_keyring(), or in a
subprocess through PYTHON_KEYRING_BACKEND): no mocks, the keyring API end to end.

``MemoryKeyring`` lives in one process. ``FileKeyring`` stands in for the OS keychain across
processes (each CLI run is a new process): it keeps its entries in the JSON file named by
TRAYSTATUS_TEST_KEYRING, so a test can also check what was (and was not) stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError(f"no entry for {service}/{username}")


class FileKeyring(KeyringBackend):
    priority = 1

    @property
    def path(self) -> Path:
        return Path(os.environ["TRAYSTATUS_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _save(self, data: dict[str, str]) -> None:
        self.path.write_text(json.dumps(data))

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(f"no entry for {service}/{username}")
        self._save(data)


class NeedsCryptoKeyring(FileKeyring):
    """An encrypted file backend whose crypto package is not installed: like keyrings.alt's
    EncryptedKeyring without pycryptodome, its priority raises, so keyring refuses to load
    it when PYTHON_KEYRING_BACKEND names it."""

    # a classproperty like KeyringBackend's own; FileKeyring's priority is a plain number
    @properties.classproperty
    def priority(cls) -> float:  # type: ignore[override]
        import traystatus_test_no_such_crypto_package  # type: ignore[import-not-found]  # noqa: F401

        return 1.0


class HangingKeyring(FileKeyring):
    """A keychain that does not answer (a locked one waiting for its unlock prompt): a
    read touches the file named by TRAYSTATUS_TEST_KEYRING_ASKED, then waits a minute."""

    def get_password(self, service: str, username: str) -> str | None:
        import time

        Path(os.environ["TRAYSTATUS_TEST_KEYRING_ASKED"]).touch()
        time.sleep(60)
        return None
