"""ProfileStore's promises when names clash, when processes write at once, and when the
default profile is broken: nothing is lost, replaced or silently swapped for another.

Concurrency is tested with real processes (``python -c`` writers next to the test's own
store), the lock and the re-read are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from traystatus.core.config.profiles import ConnectionProfile, ProfileError, ProfileStore

REPO = Path(__file__).resolve().parents[2]


def _p(name: str, host: str = "h.example.org") -> ConnectionProfile:
    return ConnectionProfile(name=name, host=host, dbname="statbus")


def test_add_and_rename_refuse_a_taken_name_and_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    store = ProfileStore(path)
    store.add(_p("prod", "prod.example.org"), make_default=True)
    store.add(_p("work", "test.example.org"))
    before = path.read_bytes()

    with pytest.raises(ProfileError, match="cannot add 'prod': a profile named 'prod' "
                                           "already exists"):
        store.add(_p("prod", "elsewhere.example.org"))
    with pytest.raises(ProfileError, match="cannot rename 'work' to 'prod': a profile named "
                                           "'prod' already exists"):
        store.rename("work", _p("prod", "test.example.org"))
    assert path.read_bytes() == before
    again = ProfileStore(path)
    assert again.names() == ["prod", "work"]
    assert again.get("prod").host == "prod.example.org"
    assert again.default_name == "prod"

    # An invalid profile's name is taken too.
    path.write_text(path.read_text() + "\n[profiles.broken]\nport = 'x'\n")
    with pytest.raises(ProfileError, match="already exists"):
        ProfileStore(path).rename("work", _p("broken"))


def test_rename_keeps_place_default_and_watch(tmp_path: Path) -> None:
    from dataclasses import replace

    path = tmp_path / "profiles.toml"
    store = ProfileStore(path)
    store.add(_p("a"))
    store.add(_p("b"))
    store.add(_p("c"))
    store.set_default("b")
    store.save_settings(replace(store.settings, watched=("b", "c")))
    store.rename("b", _p("bee", "new.example.org"))
    again = ProfileStore(path)
    assert again.names() == ["a", "bee", "c"]
    assert again.default_name == "bee"
    assert again.settings.watched == ("bee", "c")
    assert again.get("bee").host == "new.example.org"


def test_replace_refuses_when_another_program_changed_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    mine = ProfileStore(path)
    mine.add(_p("prod", "one.example.org"))
    shown = mine.get("prod")
    ProfileStore(path).put(_p("prod", "two.example.org"))  # the CLI, say
    with pytest.raises(ProfileError, match="changed by another program"):
        mine.replace(_p("prod", "three.example.org"), expected=shown)
    assert ProfileStore(path).get("prod").host == "two.example.org"


def test_a_stale_store_does_not_drop_what_another_store_wrote(tmp_path: Path) -> None:
    """The tray app's store was loaded before the CLI added a profile: its next save
    (settings, another profile, a removal) keeps the CLI's profile."""
    from dataclasses import replace

    path = tmp_path / "profiles.toml"
    app = ProfileStore(path)
    app.put(_p("prod"))
    ProfileStore(path).put(_p("from-cli"))
    app.save_settings(replace(app.settings, notify_stable=False))
    app.put(_p("from-app"))
    assert ProfileStore(path).names() == ["prod", "from-cli", "from-app"]
    assert "from-cli" in app  # the app's copy is fresh after its own write
    ProfileStore(path).put(_p("late"))
    app.remove("prod")
    assert ProfileStore(path).names() == ["from-cli", "from-app", "late"]
    assert ProfileStore(path).settings.notify_stable is False


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from traystatus.core.config.profiles import ConnectionProfile, ProfileStore
    path, who, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = ProfileStore(path)  # loaded once, then stale: each write must re-read
    for i in range(n):
        store.put(ConnectionProfile(name=f"{who}-{i}", host="h.example.org"))
""")


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    n, writers = 15, 3
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"w{k}", str(n)], env=env)
        for k in range(writers)
    ]
    mine = ProfileStore(path)
    for i in range(n):
        mine.put(_p(f"test-{i}"))
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    names = set(ProfileStore(path).names())
    expected = {f"w{k}-{i}" for k in range(writers) for i in range(n)} | {
        f"test-{i}" for i in range(n)}
    assert names == expected, sorted(expected - names)
    assert not list(tmp_path.glob(".profiles-*"))  # no temporary file left behind


def test_a_held_lock_is_a_clear_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import traystatus.core.config.profiles as profiles

    path = tmp_path / "profiles.toml"
    store = ProfileStore(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(60)
        """), str(store.lock_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(profiles, "LOCK_TIMEOUT", 0.3)
        with pytest.raises(ProfileError, match=r"held the lock.*nothing was changed"):
            store.add(_p("x"))
    finally:
        holder.kill()
        holder.communicate()
    store.add(_p("x"))  # the OS released the dead process's lock
    assert ProfileStore(path).names() == ["x"]


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        # no default, the first profile is not valid: that one, never the next
        ("[profiles.prod]\nport = 'x'\n[profiles.test]\nhost = 't'\n",
         r"the default profile: profile 'prod': .*port"),
        # a typo, or a removed profile
        ("default = 'prdo'\n[profiles.prod]\nhost = 'p'\n[profiles.test]\nhost = 't'\n",
         r"the default profile 'prdo' \(default = \"prdo\" in .*\) does not exist "
         r"\(profiles: 'prod', 'test'\)"),
        # not text
        ("default = 5\n[profiles.prod]\nhost = 'p'\n",
         r"default = 5 in .* is not a profile name"),
        # the only profile is not valid: not libpq's defaults either
        ("[profiles.only]\nsslmode = 'sometimes'\n", r"profile 'only': .*sslmode"),
    ],
)
def test_a_broken_default_is_an_error_naming_it(tmp_path: Path, text: str, wanted: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    store = ProfileStore(path)
    assert store.configured
    with pytest.raises(ProfileError, match=wanted):
        store.get()
    assert store.default_problem() is not None
    # Saving something else keeps the broken default as it was: still an error.
    store.save_settings(store.settings)
    with pytest.raises(ProfileError, match=wanted):
        ProfileStore(path).get()


def test_adding_a_profile_does_not_move_the_default(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text("[profiles.a]\nhost = 'a'\n[profiles.b]\nhost = 'b'\n")
    store = ProfileStore(path)
    assert store.default_name == "a"
    store.add(_p("c"))
    assert ProfileStore(path).get().name == "a"


def test_removing_the_default_names_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    store = ProfileStore(path)
    store.add(_p("a"))
    store.add(_p("b"))
    store.remove("a")
    assert ProfileStore(path).default_name == "b"
    store.remove("b")
    again = ProfileStore(path)
    assert again.default_name is None and not again.configured
