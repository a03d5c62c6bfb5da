"""Passwords per profile in the OS keychain, never in plain text.

Entries live under service ``traystatus`` with the profile name as user name, through
:mod:`keyring` (Secret Service / gnome-keyring / KWallet on Linux, Keychain on macOS,
Credential Manager on Windows).

Why the checks: on a machine without a desktop keyring picks ``keyring.backends.fail`` and
every write raises; worse, if ``keyrings.alt`` is installed it silently becomes the default
and writes secrets to a plain text file. So before storing or reading, :func:`keychain_info`
judges the active backend, and :class:`NoSecureKeychain` tells the user what to do instead
(start/unlock a Secret Service, or use ``~/.pgpass``). Nothing here falls back to a file.

:mod:`keyring` is imported when a keychain is first used, not with this module: it costs
about 40 ms, and the CLI's one-shot commands mostly never ask the keychain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "traystatus"

log = logging.getLogger(__name__)

ADVICE = (
    "install and unlock a Secret Service keychain (gnome-keyring or KWallet; headless: "
    "`echo -n PASS | gnome-keyring-daemon --unlock --components=secrets --daemonize` on a "
    "D-Bus session), or put the password in ~/.pgpass (mode 0600), which libpq reads itself"
)


class NoSecureKeychain(RuntimeError):
    """No secure keychain is available; the message says which backend and what to do."""

    def __init__(self, backend_name: str, reason: str) -> None:
        self.backend_name = backend_name
        self.reason = reason
        super().__init__(
            f"no secure keychain: {reason} (keyring backend {backend_name}); the password was "
            f"not stored anywhere. To fix: {ADVICE}"
        )


@dataclass(frozen=True)
class KeychainInfo:
    """The active keyring backend and whether traystatus trusts it with passwords."""

    backend_name: str
    secure: bool
    reason: str  # why it is not secure; empty when secure


def _name(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _judge(backend: KeyringBackend) -> str:
    """Why ``backend`` is not secure, or "" when it is."""
    name = _name(backend)
    module = type(backend).__module__
    if module == "keyring.backends.fail":
        return "no keychain service was found (keyring fell back to its 'fail' backend)"
    if module == "keyring.backends.null":
        return "keyring is switched off (null backend)"
    if module.startswith("keyrings.alt"):
        # PlaintextKeyring writes secrets readable by anyone with the file; the others in
        # keyrings.alt are deprecated or need a prompt on stdin, unusable from a tray app.
        return f"{name} from keyrings.alt stores passwords in a file, not in a keychain"
    if module == "keyring.backends.chainer":
        children: list[KeyringBackend] = list(getattr(backend, "backends", []))
        if not children:
            return "no keychain service was found (the chainer backend has no backends)"
        for child in children:
            why = _judge(child)
            if why:
                return why
    return ""


def _active() -> KeyringBackend:
    import keyring

    return keyring.get_keyring()


def keychain_info(backend: KeyringBackend | None = None) -> KeychainInfo:
    """Judge ``backend`` (the active keyring backend by default)."""
    backend = backend if backend is not None else _active()
    reason = _judge(backend)
    return KeychainInfo(_name(backend), not reason, reason)


def require_secure(backend: KeyringBackend | None = None) -> KeyringBackend:
    """The active backend if it is secure, else raise :class:`NoSecureKeychain`."""
    backend = backend if backend is not None else _active()
    info = keychain_info(backend)
    if not info.secure:
        raise NoSecureKeychain(info.backend_name, info.reason)
    return backend


def store_password(profile: str, password: str) -> None:
    """Put ``password`` in the keychain for ``profile``; raises NoSecureKeychain."""
    import keyring.errors

    backend = require_secure()
    try:
        backend.set_password(SERVICE, profile, password)
    except keyring.errors.KeyringError as ex:  # locked, refused, D-Bus gone
        raise NoSecureKeychain(_name(backend), f"the keychain refused to store it ({ex})") from ex
    log.debug("stored the password of profile %r in %s", profile, _name(backend))


def get_password(profile: str) -> str | None:
    """The stored password of ``profile``, or None if there is none or no secure keychain.

    Reading never raises: a missing keychain only means "not stored", and the caller asks
    the user or relies on libpq (PGPASSWORD, ~/.pgpass) instead.
    """
    import keyring.errors

    backend = _active()
    info = keychain_info(backend)
    if not info.secure:
        log.debug("not reading the keychain: %s", info.reason)
        return None
    try:
        value = backend.get_password(SERVICE, profile)
    except keyring.errors.KeyringError as ex:
        log.warning("could not read the keychain (%s): %s", info.backend_name, ex)
        return None
    return value


def delete_password(profile: str) -> bool:
    """Remove the stored password of ``profile``; True if one was removed."""
    import keyring.errors

    backend = _active()
    if not keychain_info(backend).secure:
        return False
    try:
        backend.delete_password(SERVICE, profile)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as ex:
        log.warning("could not delete the password of %r from the keychain: %s", profile, ex)
        return False
    return True
