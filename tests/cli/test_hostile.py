"""Bad input, tried on purpose: every command ends in time, in one clear line, with the
right answer. Real processes (the ``traystatus`` script), a real PostgreSQL, a real socket
server that accepts connections and never answers, real keyring backends chosen through
PYTHON_KEYRING_BACKEND."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.cli.conftest import SCRIPT, Cli, finish_job, start_job


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts every connection and never sends a byte: the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join(5)
    for c in accepted:
        c.close()
    sock.close()


# -- 1. deadlines --------------------------------------------------------------------------


def test_every_connecting_command_ends_against_a_server_that_never_answers(
    cli: Cli, silent_server: int
) -> None:
    """No connect_timeout in the DSN: the commands' own 10 s deadline must hold (before,
    doctor, install-sql and uninstall-sql waited forever). All run at once, each with and
    without a password in the DSN (with one, the password probe is skipped: the command's
    own connect counts)."""
    dsn = f"host=127.0.0.1 port={silent_server} dbname=x user=y"
    commands = {"doctor": 3, "install-sql": 3, "uninstall-sql": 3, "status": 3, "wait": 1}
    procs: dict[tuple[str, bool], subprocess.Popen[str]] = {}
    started = time.monotonic()
    for with_password in (True, False):
        for name in commands:
            args = [name, "--dsn", dsn + (" password=p" if with_password else "")]
            if name == "wait":
                args += ["--timeout", "0"]
            procs[name, with_password] = cli.popen(*args)
    results = {}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=max(1.0, 90 - (time.monotonic() - started)))
            results[key] = (proc.returncode, out + err, time.monotonic() - started)
    finally:
        for proc in procs.values():  # a command that hangs must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(results) == 2 * len(commands)
    for (name, with_password), (code, text, took) in results.items():
        what = (name, with_password)
        assert code == commands[name], (what, code, text)
        assert took < 60, (what, took)  # 10 s deadline (twice at most: probe + connect)
        assert "Traceback" not in text, text
        assert "did not answer within 10 s while connecting" in text, (what, text)
        assert "Retrying" not in text  # one-shot: no promise of a retry (item 7)


def test_connect_timeout_in_the_dsn_is_the_deadline(cli: Cli, silent_server: int) -> None:
    start = time.monotonic()
    proc = cli.run("status", "--dsn",
                   f"host=127.0.0.1 port={silent_server} dbname=x user=y connect_timeout=2")
    took = time.monotonic() - start
    assert proc.returncode == 3
    assert "did not answer within 2 s while connecting" in proc.stdout
    assert took < 9, took


# -- 2. wait --timeout 0: "is it stable now?" ---------------------------------------------


def test_wait_timeout_zero_answers_is_it_stable_now(
    cli: Cli, db_dsn: str, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    stable = cli.run("wait", "--timeout", "0", "--dsn", db_dsn)
    assert stable.returncode == 0, stable.stderr
    status = cli.run("status", "--timeout", "0", "--dsn", db_dsn)
    assert (status.returncode, status.stdout.strip()) == (0, "stable"), status.stderr
    start_job(conn)
    busy = cli.run("wait", "--timeout", "0", "--dsn", db_dsn)
    assert busy.returncode == 1
    assert "not stable after 0 s (still processing)" in busy.stderr
    finish_job(conn)


# -- 3, 11. profiles validated on add and on load ----------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--host", "h", "-o", "foo=bar"], "'foo' is not a libpq connection setting"),
        (["--port", "99999999999999999999999"], "port='99999999999999999999999' is not valid"),
        (["--port", "0"], "port='0' is not valid"),
        (["--sslmode", "bogus"], "sslmode='bogus' is not valid"),
        (["--dsn", "postgresql://u@h:notaport/db"], "port='notaport' is not valid"),
    ],
)
def test_profile_add_refuses_bad_settings_and_saves_nothing(
    cli: Cli, args: list[str], named: str
) -> None:
    proc = cli.run("profile", "add", "x", *args, "--no-password")
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not cli.config_file.exists()


def test_a_bad_stored_profile_is_one_line_and_does_not_break_the_others(
    cli: Cli, db_dsn: str
) -> None:
    good = cli.run("profile", "add", "good", "--dsn", db_dsn, "--no-password")
    assert good.returncode == 0, good.stderr
    with cli.config_file.open("a") as f:
        f.write('\n[profiles.a]\nhost = "h"\n[profiles.a.options]\nfoo = "bar"\n'
                '\n[profiles.b]\nhost = 5\n')
    listing = cli.run("profile", "list")
    no_traceback(listing)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert any(line.startswith("* good") for line in lines)
    assert any("a" in line.split()[:1] and "'foo' is not a libpq connection setting" in line
               for line in lines), lines
    assert any("host = 5 is not valid" in line for line in lines), lines
    as_json = json.loads(cli.run("profile", "list", "--json").stdout)
    errors = {p["name"]: p.get("error") for p in as_json["profiles"]}
    assert errors["good"] is None and errors["a"] and errors["b"]
    doctor = cli.run("doctor", "-p", "a")
    no_traceback(doctor)
    assert doctor.returncode == 3
    assert "'foo' is not a libpq connection setting" in doctor.stderr
    assert len(doctor.stderr.strip().splitlines()) == 1
    status = cli.run("status", "-p", "good")
    assert (status.returncode, status.stdout.strip()) == (0, "stable"), status.stderr
    # Changing another profile keeps the bad one (written back), removing it works.
    cli.run("profile", "set-default", "good")
    assert "foo" in cli.config_file.read_text()
    removed = cli.run("profile", "remove", "a")
    assert removed.returncode == 0, removed.stderr
    assert "foo" not in cli.config_file.read_text()
    assert "b" in json.dumps(json.loads(cli.run("profile", "list", "--json").stdout))


def test_an_invalid_default_profile_is_not_silently_replaced(cli: Cli, db_dsn: str) -> None:
    cli.run("profile", "add", "good", "--dsn", db_dsn, "--no-password")
    text = cli.config_file.read_text().replace('default = "good"', 'default = "bad"')
    cli.config_file.write_text(text + '\n[profiles.bad]\nport = "nope"\n')
    proc = cli.run("status")
    no_traceback(proc)
    assert proc.returncode == 3
    assert "profile 'bad'" in proc.stderr and "port='nope' is not valid" in proc.stderr


# -- 4. config location problems ---------------------------------------------------------


NO_SUCH_UID = 54321  # a user id without an entry in the password database: no home


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder outside pytest's own root: every pytest session that starts
    re-locks that root to 0700, which would lock out the other user id mid-test."""
    path = Path(tempfile.mkdtemp(prefix="traystatus-hostile-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(cli: Cli, tmp: Path) -> list[str]:
    """As root, permissions do not apply: run as a user id of no one (setpriv), which
    also has no home folder to fall back on. ``tmp``: an ``open_tmp`` folder."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    try:
        pwd.getpwuid(NO_SUCH_UID)
        pytest.skip(f"user id {NO_SUCH_UID} exists here")
    except KeyError:
        pass
    uid = str(NO_SUCH_UID)
    return ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"]


def _run(cli: Cli, prefix: list[str], *args: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**cli.env, **(env or {})}
    for k in [k for k, v in full.items() if v == "<unset>"]:
        del full[k]
    return subprocess.run([*prefix, str(SCRIPT), *args], env=full, capture_output=True,
                          text=True, timeout=60, cwd="/", check=False)


def test_config_location_problems_are_one_line_each(
    cli: Cli, db_dsn: str, open_tmp: Path
) -> None:
    work = open_tmp / "cfg"
    work.mkdir()
    prefix = _as_nobody(cli, open_tmp)
    ro = work / "readonly"
    ro.mkdir()
    (ro / "profiles.toml").write_text('[profiles.p]\nhost = "h"\n')
    (ro / "profiles.toml").chmod(0o644)
    ro.chmod(0o555)
    unreadable = work / "unreadable"
    unreadable.mkdir(mode=0o777)
    (unreadable / "profiles.toml").write_text('[profiles.p]\nhost = "h"\n')
    (unreadable / "profiles.toml").chmod(0o000)
    a_file = work / "a-file"
    a_file.write_text("")
    a_file.chmod(0o644)
    dir_toml = work / "dirtoml"
    (dir_toml / "profiles.toml").mkdir(parents=True)
    for p in (work, dir_toml, dir_toml / "profiles.toml"):
        p.chmod(0o755)
    keyring = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    cases = {
        "read-only folder": ({"TRAYSTATUS_CONFIG_DIR": str(ro)},
                             ["profile", "add", "q", "--host", "h", "--no-password"],
                             ["cannot write the settings file", "permission denied"]),
        "unreadable file": ({"TRAYSTATUS_CONFIG_DIR": str(unreadable)}, ["profile", "list"],
                            ["cannot read the settings file", "permission denied"]),
        "config dir is a file": ({"TRAYSTATUS_CONFIG_DIR": str(a_file)}, ["profile", "list"],
                                 ["cannot read the settings file", "is a file, not a folder"]),
        "profiles.toml is a folder": ({"TRAYSTATUS_CONFIG_DIR": str(dir_toml)},
                                      ["profile", "list"], ["is a folder, not a file"]),
        "HOME unset": ({"HOME": "<unset>", "XDG_CONFIG_HOME": "<unset>",
                        "TRAYSTATUS_CONFIG_DIR": "<unset>"}, ["profile", "list"],
                       ["set HOME", "TRAYSTATUS_CONFIG_DIR"]),
    }
    for what, (env, args, expected) in cases.items():
        if what == "HOME unset" and not prefix and os.path.expanduser("~") != "~":
            # A normal user has a home in the password database: nothing to report.
            continue
        proc = _run(cli, prefix, *args, env={**keyring, **env})
        no_traceback(proc)
        assert proc.returncode == 3, (what, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (what, proc.stderr)
        for text in expected:
            assert text in proc.stderr, (what, proc.stderr)
        # --dsn needs no settings file: it still works.
        status = _run(cli, prefix, "status", "--dsn", db_dsn, env={**keyring, **env})
        assert status.stdout.strip() == "stable", (what, status.stdout, status.stderr)
    assert (ro / "profiles.toml").read_text() == '[profiles.p]\nhost = "h"\n'


# -- 6. keychain backends that cannot work -------------------------------------------------

BROKEN_BACKENDS = [
    "keyring.backends.SecretService.Keyring",  # no session bus in the test environment
    "tests.cli.keyrings.NeedsCryptoKeyring",  # an encrypted backend without its package
]


@pytest.mark.parametrize("backend", BROKEN_BACKENDS)
def test_a_forced_keyring_backend_that_cannot_work(
    cli: Cli, db_dsn: str, backend: str
) -> None:
    added = cli.run("profile", "add", "p", "--dsn", db_dsn, "--password-stdin",
                    input="secret\n")
    assert added.returncode == 0, added.stderr
    assert "secret" in cli.keyring_file.read_text()
    broken = {"PYTHON_KEYRING_BACKEND": backend}

    doctor = cli.run("doctor", "-p", "p", env=broken)
    no_traceback(doctor)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "warn  keychain: no secure keychain: the keyring backend" in doctor.stdout
    assert "cannot start" in doctor.stdout

    listing = cli.run("profile", "list", env=broken)
    no_traceback(listing)
    assert listing.returncode == 0
    assert "[keychain not readable]" in listing.stdout
    assert "cannot start" in listing.stderr

    status = cli.run("status", "-p", "p", env=broken)
    no_traceback(status)
    assert status.stdout.strip() == "stable"  # trust login: no password needed

    add = cli.run("profile", "add", "q", "--dsn", db_dsn, "--password-stdin",
                  input="pw\n", env=broken)
    no_traceback(add)
    assert add.returncode == 3
    assert "was not saved" in add.stderr and "cannot start" in add.stderr
    assert len(add.stderr.strip().splitlines()) == 1, add.stderr
    assert "'q'" not in cli.run("profile", "list").stdout

    remove = cli.run("profile", "remove", "p", env=broken)
    no_traceback(remove)
    assert remove.returncode == 3
    assert "was NOT removed (neither from" in remove.stderr
    assert "p" in cli.run("profile", "list", "--json").stdout  # the file kept it
    assert "secret" in cli.keyring_file.read_text()  # and the keychain too

    # With a working keychain both halves go.
    remove = cli.run("profile", "remove", "p")
    assert remove.returncode == 0
    assert "and its keychain entry" in remove.stdout
    assert "secret" not in cli.keyring_file.read_text()


def test_profile_remove_puts_the_password_back_when_the_file_cannot_be_written(
    cli: Cli, db_dsn: str, open_tmp: Path
) -> None:
    prefix = _as_nobody(cli, open_tmp)
    folder, keyring_file = open_tmp / "config", open_tmp / "keyring.json"
    env = {"TRAYSTATUS_CONFIG_DIR": str(folder), "TRAYSTATUS_TEST_KEYRING": str(keyring_file),
           "HOME": str(open_tmp)}
    cli.run("profile", "add", "p", "--dsn", db_dsn, "--password-stdin", input="secret\n",
            env=env)
    keyring_file.chmod(0o666)
    (folder / "profiles.toml").chmod(0o644)
    folder.chmod(0o555)
    try:
        proc = _run(cli, prefix, "profile", "remove", "p", env=env)
    finally:
        folder.chmod(0o755)
    no_traceback(proc)
    assert proc.returncode == 3, proc.stderr
    assert "was NOT removed" in proc.stderr and "put back" in proc.stderr
    assert "secret" in keyring_file.read_text()
    assert "[profiles.p]" in (folder / "profiles.toml").read_text()


# -- 8, 9, 10. messages that name the right thing -----------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"port": "99999"}, "port='99999' is not valid"),
        ({"port": "-1"}, "port='-1' is not valid"),
        ({"sslmode": "bogus"}, "sslmode='bogus' is not valid"),
    ],
)
def test_an_invalid_setting_is_named(
    cli: Cli, db_dsn: str, change: dict[str, str], named: str
) -> None:
    for command in ("status", "doctor", "install-sql"):
        proc = cli.run(command, "--dsn", make_conninfo(db_dsn, **change))
        no_traceback(proc)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert named in proc.stderr
        assert "cannot be reached" not in proc.stderr


def test_invalid_port_in_a_url_is_named(cli: Cli) -> None:
    proc = cli.run("status", "--dsn", "postgresql://u@localhost:notaport/db")
    assert proc.returncode == 2
    assert "port='notaport' is not valid" in proc.stderr
    assert "Servname" not in proc.stderr


def test_no_such_database_is_told_apart_from_a_wrong_password(
    cli: Cli, db_dsn: str, login_role: tuple[str, str]
) -> None:
    user, password = login_role
    missing = make_conninfo(db_dsn, user=user, password=password, dbname="no_such_db")
    wrong = make_conninfo(db_dsn, user=user, password="not-" + password)
    for command in ("status", "doctor"):
        proc = cli.run(command, "--dsn", missing)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 3
        assert "The database 'no_such_db' does not exist" in text, text
        assert "wrong password" not in text
        proc = cli.run(command, "--dsn", wrong)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 3
        assert "the password is wrong or the user does not exist" in text, text
        assert "does not exist on" not in text


def test_password_in_the_dsn_with_no_password_says_remove_it(cli: Cli) -> None:
    proc = cli.run("profile", "add", "x", "--dsn", "host=h user=u password=hunter2",
                   "--no-password")
    no_traceback(proc)
    assert proc.returncode == 2
    assert "remove password=... from the DSN" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert not cli.config_file.exists()


# -- 12. doctor names every missing grant -------------------------------------------------


GRANTED = (
    "SELECT p.oid::regprocedure::text FROM pg_proc p"
    " JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a"
    " WHERE n.nspname = 'public' AND a.privilege_type = 'EXECUTE'"
    " AND a.grantee = 'authenticated'::regrole ORDER BY 1"
)


def test_doctor_lists_every_function_the_role_may_not_execute(
    cli: Cli, db_dsn: str, bare_db_dsn: str, make_role: Callable[..., tuple[str, str]],
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """Every function install.sql grants (those granted with it and not without it)."""
    name, password = make_role()
    with psycopg.connect(bare_db_dsn) as bare:
        statbus_own = {r[0] for r in bare.execute(GRANTED)}
    granted = [r[0] for r in conn.execute(GRANTED) if r[0] not in statbus_own]
    assert len(granted) >= 7, granted
    proc = cli.run("doctor", "--dsn", make_conninfo(db_dsn, user=name, password=password))
    lines = [x for x in proc.stdout.splitlines() if x.split()[1:2] == ["privileges:"]]
    assert lines, proc.stdout + proc.stderr
    line = lines[0]
    for fn in granted:
        short = str(fn).split("(")[0].removeprefix("public.")
        assert short in line, (fn, line)
