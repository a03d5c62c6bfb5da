"""Settings round trip (password only in the test keychain) and "Test connection" saying
exactly what is wrong, against the real test database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from PySide6.QtWidgets import QApplication

from tests.app.conftest import ARTIFACTS, MemoryKeyring, publish_doc_image, run
from traystatus.app.settings import SettingsDialog, check_connection
from traystatus.core.config.profiles import ProfileStore
from traystatus.core.model.state import Problem


def _fill(dialog: SettingsDialog, dsn: str, user: str | None = None,
          password: str = "") -> None:
    params = conninfo_to_dict(dsn)
    dialog.name.setText("work")
    dialog.host.setText(str(params["host"]))
    dialog.port.setText(str(params["port"]))
    dialog.dbname.setText(str(params["dbname"]))
    dialog.user.setText(user or str(params["user"]))
    dialog.password.setText(password)


def test_round_trip_password_only_in_the_keychain(
    qapp: QApplication, config_dir: Path, memory_keyring: MemoryKeyring, db_dsn: str,
    login_role: tuple[str, str],
) -> None:
    user, password = login_role
    store = ProfileStore()
    dialog = SettingsDialog(store)
    _fill(dialog, db_dsn, user, password)
    dialog.notify_disconnected.setChecked(False)
    dialog.grace.setValue(90)
    assert dialog.min_processing.value() == 30  # the default shown
    dialog.min_processing.setValue(45)
    dialog.icon_style.setCurrentIndex(dialog.icon_style.findData("mono-dark"))
    assert dialog.save(), dialog.message.text()

    text = (config_dir / "profiles.toml").read_text()
    assert password not in text
    assert memory_keyring.store == {("traystatus", "work"): password}
    again = ProfileStore()
    p = again.get("work")
    assert (p.user, p.dbname) == (user, conninfo_to_dict(db_dsn)["dbname"])
    s = again.settings
    assert (s.notify_disconnected, s.disconnect_grace_s, s.icon_style) == (False, 90.0, "mono-dark")
    # A new dialog shows what was saved, and never the password.
    d2 = SettingsDialog(again)
    assert d2.user.text() == user and d2.password.text() == ""
    assert not d2.notify_disconnected.isChecked()
    assert s.notify_min_processing_s == 45.0 and d2.min_processing.value() == 45
    assert "keychain" in d2.keychain.text()
    # Freed by Qt in this thread, not by a later cyclic GC (PySide6 crashed there).
    dialog.deleteLater()
    d2.deleteLater()


def test_test_connection_reports_what_is_wrong(
    qapp: QApplication, qloop: asyncio.AbstractEventLoop, config_dir: Path,
    memory_keyring: MemoryKeyring, db_dsn: str, bare_db_dsn: str, login_role: tuple[str, str],
) -> None:
    user, password = login_role
    dialog = SettingsDialog(ProfileStore())

    _fill(dialog, db_dsn, user, password)
    ok = run(qloop, dialog.run_check())
    assert ok.ok and ok.detail == "Connected. The system is stable."
    assert "Connected" in dialog.check_result.text()

    _fill(dialog, db_dsn, user, "wrong-" + password)
    bad = run(qloop, dialog.run_check())
    assert not bad.ok and bad.problem == Problem.AUTH_FAILED
    assert dialog.check_result.text() == bad.detail

    # No traystatus SQL: the app watches StatBus directly, and the test says so.
    _fill(dialog, bare_db_dsn)
    direct = run(qloop, dialog.run_check())
    assert direct.ok, direct.detail
    assert direct.detail == (
        "Connected. traystatus's SQL is not installed: watching StatBus directly (an "
        "administrator can install it for fewer notifications). The system is stable."
    )
    # Asked for the installed SQL only, its absence is the error with the fix.
    missing = run(qloop, check_connection(bare_db_dsn, None, seconds=10, source="installed"))
    assert missing.problem == Problem.SQL_MISSING and "install-sql" in missing.detail

    params = conninfo_to_dict(db_dsn)
    closed = run(qloop, check_connection(
        f"host=127.0.0.1 port=1 dbname={params['dbname']} user=x", None, seconds=5))
    assert closed.problem == Problem.UNREACHABLE


def test_no_secure_keychain_is_said_loudly_and_nothing_is_written(
    qapp: QApplication, config_dir: Path, db_dsn: str,
) -> None:
    import keyring
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        dialog = SettingsDialog(ProfileStore())
        assert "No secure keychain" in dialog.keychain.text()
        _fill(dialog, db_dsn, password="secret-pw")
        assert not dialog.save()
        assert "no secure keychain" in dialog.message.text()
        assert "secret-pw" not in (config_dir / "profiles.toml").read_text()
        dialog.deleteLater()
    finally:
        keyring.set_keyring(old)


def test_render_settings_dialog(
    qapp: QApplication, config_dir: Path, memory_keyring: MemoryKeyring
) -> None:
    from traystatus.core.config.profiles import ConnectionProfile

    store = ProfileStore()
    store.put(ConnectionProfile(name="production", host="statbus.example.org", port="3015",
                                dbname="statbus", user="ana.lyst@example.org",
                                sslmode="verify-full", sslnegotiation="direct"))
    store.put(ConnectionProfile(name="test", host="statbus-test.example.org", port="3015",
                                dbname="statbus", user="ana.lyst@example.org"))
    dialog = SettingsDialog(store)
    # Editing a profile keeps what the form does not show.
    dialog.port.setText("3016")
    assert dialog.profile().sslnegotiation == "direct" and dialog.profile().port == "3016"
    dialog.port.setText("3015")
    dialog.check_result.setText("Connected. The system is stable.")
    dialog.check_result.setStyleSheet("color: #2e7d32;")
    dialog.resize(dialog.full_size(720))  # every section (a screen may be shorter)
    dialog.show()
    qapp.processEvents()
    dialog.resize(720, dialog.height() + dialog.body.height() - dialog.scroller.viewport().height())
    qapp.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "settings.png"
    assert dialog.grab().save(str(out))
    publish_doc_image(out, "settings.png")
    dialog.close()
    dialog.deleteLater()
