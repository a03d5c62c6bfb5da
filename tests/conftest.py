"""Fixture plugins for every test folder (pytest reads pytest_plugins only here), and what
lets the suite run in parallel (pytest-xdist, ``bash scripts/test`` picks ``-n``).

Parallel runs: every worker is a pytest session of its own, so every session fixture
(the embedded PostgreSQL, the stand-in templates, the e2e desktop, the real StatBus's
copies) is per worker. What a test could still share with another worker is made private
here, per session: the XDG config/data/state/cache/runtime folders (a test that forgets
TRAYSTATUS_CONFIG_DIR writes profiles and endings ledgers into a folder of its session's
own, never into the developer's home or another worker's). Scheduling (only under xdist):
``--dist loadgroup`` through our own scheduler (below), the longest tests first
(tests/durations.json, written by ``scripts/slowest.py --write-durations``), and three
kinds of groups, each run by one worker one test after the other:

* ``heavy``: the timing-sensitive and CPU-hungry tests (the soak's minute of chaos, the
  race tests), so that they never fight each other for the two cores;
* ``x11``: every test that starts an X server (the e2e tests on the session's virtual
  desktop, the desktop checks, the bundle's tray, dunst): one at a time;
* a module with a module-scoped fixture (a wheel, a bundle, a server, a notification
  server): its tests stay together, so the fixture is built once, not once per worker.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.fix_db", "tests.fix_proxy"]

# A run started as a background job of a script inherits SIGINT ignored, and an ignored
# signal stays ignored across exec: every child a test starts would ignore the Ctrl-C it is
# sent. A handled signal is reset to its default in the child (tests/test_child_signals.py).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HERE = Path(__file__).resolve().parent
DURATIONS = HERE / "durations.json"
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... or "" (not xdist)
# The tests that must not share the machine with each other: each one measures how fast the
# truth arrives while it hammers the database (races) or the whole stack (the soak).
HEAVY = ("tests/soak/test_soak.py", "tests/sql/test_race.py",
         "tests/builtin/test_builtin_race.py")
# The tests that start X servers (Xvfb -displayfd), tray hosts and notification servers:
# two of them starting or stopping at the same time lost a display under them ("trayer:
# cannot open display: :2", twice in three parallel runs), so they run one at a time.
X11_MODULES = ("tests/e2e/", "tests/desktop/", "tests/packaging/test_bundle.py",
               "tests/packaging/test_window_class.py", "tests/packaging/test_tray_host.py",
               "tests/app/test_notifier_dunst.py", "tests/app/test_notifier_gone.py",
               "tests/demo/test_scripts_demo.py")
X11_FIXTURES = ("desktop", "session", "xvfb")
DEFAULT_SECONDS = 0.5  # a test tests/durations.json does not know yet


def _private_session_dirs() -> None:
    """XDG folders of this session's own (per xdist worker), removed at exit."""
    root = Path(tempfile.mkdtemp(prefix=f"traystatus-test-{WORKER or 'main'}-"))
    atexit.register(shutil.rmtree, root, True)
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache"),
                     ("XDG_RUNTIME_DIR", "runtime")):
        (root / sub).mkdir(mode=0o700)
        os.environ[var] = str(root / sub)


_private_session_dirs()


def pytest_configure(config: pytest.Config) -> None:
    # `pytest -n 3` alone means --dist load; ours is loadgroup with our own order (below).
    if getattr(config.option, "numprocesses", None) and config.option.dist == "load":
        config.option.dist = "loadgroup"
    if getattr(config.option, "dist", "no") == "loadgroup" and not WORKER:
        # the workers (started after this, with this environment) write their groups here
        groups = Path(tempfile.mkdtemp(prefix="traystatus-xdist-")) / "groups.json"
        atexit.register(shutil.rmtree, groups.parent, True)
        os.environ[GROUPS_ENV] = str(groups)


GROUPS_ENV = "TRAYSTATUS_TEST_XDIST_GROUPS"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup`` by our groups. (xdist's own puts the group into ``item._nodeid``,
    which pytest 9 no longer reads: every test would be a group of its own.)"""
    if config.getvalue("dist") != "loadgroup" or not os.environ.get(GROUPS_ENV):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """One work unit per group (run by one worker in order) or per single test; the
        units in the workers' collection order, which is longest first."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = json.loads(Path(os.environ[GROUPS_ENV]).read_text())
            return self.groups.get(nodeid, nodeid)

    config.option.loadscopereorder = False  # keep the workers' order: longest first
    return GroupScheduling(config, log)


def _group_of(item: pytest.Item) -> str | None:
    nodeid = item.nodeid
    if nodeid.startswith(HEAVY):
        return "heavy"
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    if nodeid.startswith(X11_MODULES) or any(name in defs for name in X11_FIXTURES):
        return "x11"
    if any(d and d[-1].scope == "module" for d in defs.values()):
        return "module " + nodeid.split("::", 1)[0]
    return None


def _durations() -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per node id and per test name (a moved file keeps its tests' names)."""
    try:
        by_id: dict[str, float] = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}, {}
    by_name = {k.split("::", 1)[-1]: v for k, v in by_id.items()}
    return by_id, by_name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: group (see the module's docstring) and order the longest first,
    a group by the sum of its tests, so the tail of the run is short tests; the groups go to
    the file the scheduler reads. Serial runs keep pytest's order. Every worker computes the
    same order (xdist checks it)."""
    if not WORKER:
        return
    by_id, by_name = _durations()

    def seconds(item: pytest.Item) -> float:
        name = item.nodeid.split("::", 1)[-1]
        return by_id.get(item.nodeid, by_name.get(name, DEFAULT_SECONDS))

    units: dict[str, list[pytest.Item]] = {}
    groups: dict[str, str] = {}
    for item in items:
        group = _group_of(item)
        if group is not None:
            groups[item.nodeid] = group
        units.setdefault(group or item.nodeid, []).append(item)
    ordered = sorted(units.values(), key=lambda unit: -sum(map(seconds, unit)))
    items[:] = [item for unit in ordered for item in unit]
    target = os.environ.get(GROUPS_ENV)
    if target:  # every worker writes the same; the last rename wins
        tmp = Path(f"{target}.{WORKER}")
        tmp.write_text(json.dumps(groups))
        tmp.replace(target)
