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

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "traystatus"
BACKEND_ENV = "PYTHON_KEYRING_BACKEND"
KEYCHAIN_TIMEOUT = 30.0
"""Seconds an asyncio caller waits for one keychain call (a Secret Service unlock prompt,
or D-Bus's own 25 s timeout), then goes on without it."""

T = TypeVar("T")

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


class BrokenKeychain(NoSecureKeychain):
    """The keychain could not be used at all (the backend does not start, or it failed
    while reading or deleting): an entry may exist that traystatus cannot reach."""

    def __init__(self, backend_name: str, reason: str) -> None:
        super().__init__(backend_name, reason)
        self.args = (f"the keychain cannot be used: {reason}",)


def _active() -> tuple[KeyringBackend | None, KeychainInfo]:
    """The active backend and its judgement; (None, why) when it cannot even start.

    ``PYTHON_KEYRING_BACKEND`` (or keyring's config file) may name a backend that cannot
    work here: the Secret Service without a session bus, an encrypted file backend without
    its crypto package. keyring then raises from ``get_keyring()`` itself.
    """
    try:
        import keyring  # loaded when first needed: the CLI's one-shot commands may not

        backend = keyring.get_keyring()
    except Exception as ex:  # any backend's own start-up failure
        forced = os.environ.get(BACKEND_ENV, "")
        name = forced or "(keyring's configured backend)"
        chosen = f"{BACKEND_ENV}={forced}" if forced else "keyring's configuration"
        reason = (f"the keyring backend {name} cannot start ({type(ex).__name__}: "
                  f"{_one_line(ex)}); fix what it needs or change {chosen}")
        return None, KeychainInfo(name, False, reason)
    reason = _judge(backend)
    return backend, KeychainInfo(_name(backend), not reason, reason)


def _one_line(ex: BaseException) -> str:
    return " ".join(str(ex).split()) or type(ex).__name__


def keychain_info(backend: KeyringBackend | None = None) -> KeychainInfo:
    """Judge ``backend`` (the active keyring backend by default). Never raises."""
    if backend is None:
        return _active()[1]
    reason = _judge(backend)
    return KeychainInfo(_name(backend), not reason, reason)


def require_secure(backend: KeyringBackend | None = None) -> KeyringBackend:
    """The active backend if it is secure, else raise :class:`NoSecureKeychain`."""
    if backend is None:
        active, info = _active()
        if active is None:
            raise BrokenKeychain(info.backend_name, info.reason)
        backend = active
    info = keychain_info(backend)
    if not info.secure:
        raise NoSecureKeychain(info.backend_name, info.reason)
    return backend


def store_password(profile: str, password: str) -> None:
    """Put ``password`` in the keychain for ``profile``; raises NoSecureKeychain."""
    backend = require_secure()
    try:
        backend.set_password(SERVICE, profile, password)
    except Exception as ex:  # KeyringError (locked, refused), or the backend's own (D-Bus)
        raise NoSecureKeychain(
            _name(backend), f"the keychain refused to store it ({_one_line(ex)})"
        ) from ex
    log.debug("stored the password of profile %r in %s", profile, _name(backend))


def get_password(profile: str) -> str | None:
    """The stored password of ``profile``, or None if there is none or no secure keychain.

    Reading never raises: a missing keychain only means "not stored", and the caller asks
    the user or relies on libpq (PGPASSWORD, ~/.pgpass) instead.
    """
    backend, info = _active()
    if backend is None:
        _warn_once(f"the keychain cannot be read: {info.reason}")
        return None
    if not info.secure:
        log.debug("not reading the keychain: %s", info.reason)
        return None
    try:
        return backend.get_password(SERVICE, profile)
    except Exception as ex:  # KeyringError, or the backend's own (D-Bus, crypto)
        _warn_once(f"could not read the keychain ({info.backend_name}: {_one_line(ex)})")
        return None


_warned: set[str] = set()


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        log.warning("%s. To fix: %s", text, ADVICE)


def delete_password(profile: str) -> bool:
    """Remove the stored password of ``profile``; True if one was removed. Never raises
    (a failure is logged); :func:`delete_password_or_raise` says why instead."""
    try:
        return delete_password_or_raise(profile)
    except NoSecureKeychain as ex:
        log.warning("could not delete the password of %r from the keychain: %s", profile, ex)
        return False


def delete_password_or_raise(profile: str) -> bool:
    """Remove the stored password of ``profile``: True if one was removed, False if there
    was none (an insecure backend never got one: traystatus does not store there).
    Raises :class:`BrokenKeychain` when the keychain could not be asked."""
    backend, info = _active()
    if backend is None:
        raise BrokenKeychain(info.backend_name, info.reason)
    if not info.secure:
        return False
    import keyring.errors

    try:
        backend.delete_password(SERVICE, profile)
    except keyring.errors.PasswordDeleteError:
        return False
    except Exception as ex:  # KeyringError, or the backend's own (D-Bus, crypto)
        raise BrokenKeychain(
            info.backend_name, f"the keychain refused to delete it ({_one_line(ex)})"
        ) from ex
    return True


def peek_password(profile: str) -> str | None:
    """The stored password, raising :class:`BrokenKeychain` when the keychain cannot be
    read (``get_password`` says None instead): to put an entry back after a failure."""
    backend, info = _active()
    if backend is None:
        raise BrokenKeychain(info.backend_name, info.reason)
    if not info.secure:
        return None
    try:
        return backend.get_password(SERVICE, profile)
    except Exception as ex:
        raise BrokenKeychain(
            info.backend_name, f"the keychain could not be read ({_one_line(ex)})"
        ) from ex


# -- off the event loop ---------------------------------------------------------------------
# A keychain call may block for long: the Secret Service shows an unlock prompt and waits
# for the person, or D-Bus waits 25 s for a service that hangs. The tray app's loop (Qt and
# asyncio in one) must not stop meanwhile, so its keychain calls run in one worker thread
# (one at a time: a single unlock prompt, and backends need not be thread-safe), with a
# deadline. The thread is a daemon: a call that never returns cannot keep the app from
# quitting (a ThreadPoolExecutor's workers are joined at exit).


class KeychainTimeout(BrokenKeychain):
    """The keychain did not answer in time (the call may still finish later)."""

    def __init__(self, backend_name: str, reason: str) -> None:
        super().__init__(backend_name, reason)
        self.args = (reason,)


class _KeychainThread:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="keychain",
                                                daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            self._one(*self._jobs.get())

    @staticmethod
    def _one(future: concurrent.futures.Future[Any], fn: Callable[..., Any],
             args: tuple[Any, ...]) -> None:
        # A function of its own, so that nothing of a finished job stays referenced from
        # this thread while it waits for the next: the future's callbacks lead to the
        # caller's task and Qt objects, which must be freed in the GUI thread, never here.
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as ex:  # handed to the caller, who decides
            future.set_exception(ex)


_worker = _KeychainThread()


async def off_loop(fn: Callable[..., T], *args: Any, seconds: float | None = None) -> T:
    """``fn(*args)`` in the keychain thread, awaited without blocking the loop.
    :class:`KeychainTimeout` after ``seconds`` (:data:`KEYCHAIN_TIMEOUT` when None)."""
    limit = KEYCHAIN_TIMEOUT if seconds is None else seconds
    future = asyncio.wrap_future(_worker.submit(fn, *args))
    try:
        return await asyncio.wait_for(future, limit)
    except TimeoutError:
        name = keychain_backend_name()
        raise KeychainTimeout(
            name, f"the keychain did not answer within {limit:g} s (a locked keychain may be "
            "waiting for its password, or its service hangs)"
        ) from None


def keychain_backend_name() -> str:
    """The active backend's name, without starting one (for messages)."""
    try:
        import keyring

        return _name(keyring.get_keyring())
    except Exception:
        return os.environ.get(BACKEND_ENV, "") or "(keyring's configured backend)"


async def get_password_async(profile: str, seconds: float | None = None) -> str | None:
    """:func:`get_password` off the loop. Never raises: a keychain that does not answer
    in time counts as "not stored", with one warning."""
    try:
        return await off_loop(get_password, profile, seconds=seconds)
    except KeychainTimeout as ex:
        _warn_once(f"could not read the keychain: {ex.reason}")
        return None
