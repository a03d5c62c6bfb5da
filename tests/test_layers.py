"""The layers, enforced: who may import whom inside traystatus (docs/architecture.md).

    core      asyncio + psycopg; imports nothing of traystatus above it (and never Qt)
    desktop   desktop integration without Qt; imports core
    cli, app, demo, serve   front ends; import core (and desktop), never each other,
              except that the CLI's entry (cli/main.py) starts the tray app, the demo and
              the server, lazily (inside a function), so a one-shot command loads none
    _paths, traystatus/__init__   imported by anyone

Inside core, the rooms, each importing only the rooms below it:

    words     plurals and durations, printable text, redaction     (nothing)
    model     State, Status, jobs, progress, upgrades, estimates   words
    pg        connecting, the link, libpq settings, our SQL files,
              what an error means (diagnosis) and the probe         words, model
    config    profiles, keychain, passwords, TLS env, log files    words, model, pg
    watch     the Monitor, readers, schedule, endings, SourceBase  words, model, pg, config
    relay     the relay client and its validated messages          ... and watch
    source.py the seam that picks a source                         any room

A module whose name starts with ``_`` is private to its room: nothing outside the room
imports it (tests may). model/, words/ and pg/diagnosis.py are pure: no I/O of any kind
(``impurities``).

Read from the source with ``ast`` (every import, at module level or inside a function),
so the rule holds for code paths no test runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "traystatus"

ANYONE = {"traystatus", "traystatus._paths"}
ALLOWED = {
    "core": {"core"},
    "desktop": {"desktop", "core"},
    "cli": {"cli", "core", "desktop"},
    "app": {"app", "core", "desktop"},
    "demo": {"demo", "core"},
    "serve": {"serve", "core"},
    "__main__": {"cli"},
}
# Rooms inside core, each allowed the rooms below it (docs/architecture.md).
ROOM_ORDER = ("words", "model", "pg", "config", "watch", "relay")
ROOMS = {room: set(ROOM_ORDER[: i + 1]) for i, room in enumerate(ROOM_ORDER)}
ROOMS["source"] = set(ROOM_ORDER) | {"source"}
# The CLI's entry point starts the other front ends, lazily.
LAZY_FROM_CLI = {"app", "demo", "serve"}
CLI_ENTRIES = {"traystatus.cli.main", "traystatus.cli.servecmd"}
NO_QT = {"core", "desktop", "cli", "demo", "serve"}
# The app's words and decisions, apart from its widgets: no Qt (nor a module that has it),
# so plain tests check them (docs/app.md).
QT_FREE_APP = {"traystatus.app.texts", "traystatus.app.joblabel", "traystatus.app.palette",
               "traystatus.app.notify_policy", "traystatus.app.tasks"}
QT = ("PySide6", "shiboken6", "qasync")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (absolute)
    lazy: bool  # inside a function
    line: int


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _room(module: str) -> str:
    """``traystatus.core.ROOM...`` -> ROOM ("" outside core or for core itself)."""
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "core":
        return ""
    return parts[2] if len(parts) > 3 or parts[2] in ROOMS else ""


def _private_room(target: str) -> str:
    """The room a private module (``_name``) belongs to, or "" when public."""
    parts = target.split(".")
    if len(parts) > 3 and parts[1] == "core" and parts[3].startswith("_") and \
            parts[3] != "__init__":
        return parts[2]
    return ""


def _imports(path: Path) -> list[Import]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts).removesuffix(".__init__")
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    if path.name != "__init__.py":
                        base = base[:-1]
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                for a in child.names:
                    full = f"{target}.{a.name}"
                    # `from traystatus import autostart` imports a module, not a name.
                    is_module = (PACKAGE.parent / Path(*full.split("."))).with_suffix(
                        ".py"
                    ).exists() or (PACKAGE.parent / Path(*full.split("."))).is_dir()
                    found.append(
                        Import(module, full if is_module else target, lazy, child.lineno)
                    )
            visit(child, inner)

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    return [i for p in sorted(PACKAGE.rglob("*.py")) for i in _imports(p)]


def violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        layer = _layer(imp.module)
        top = imp.target.split(".")[0]
        if top in QT and layer in NO_QT:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} (no Qt in {layer})")
        widgets = _layer(imp.target) == "app" and imp.target not in QT_FREE_APP | {"traystatus.app"}
        if imp.module in QT_FREE_APP and (top in QT or widgets):
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} (a Qt-free app module)")
            continue
        if top != "traystatus" or imp.target in ANYONE or not layer or layer == "_paths":
            continue
        target_layer = _layer(imp.target)
        private = _private_room(imp.target)
        if private and _room(imp.module) != private:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} (private to core.{private})")
            continue
        room, target_room = _room(imp.module), _room(imp.target)
        if layer == target_layer == "core" and room and target_room:
            if target_room not in ROOMS[room]:
                bad.append(f"{imp.module}:{imp.line} imports {imp.target} "
                           f"(core.{room} -> core.{target_room})")
            continue
        if layer == target_layer == "core" and imp.module != "traystatus.core" and not room:
            bad.append(f"{imp.module}:{imp.line}: a module of core outside its rooms")
            continue
        if target_layer in ALLOWED.get(layer, set()):
            continue
        if (
            layer == "cli"
            and target_layer in LAZY_FROM_CLI
            and imp.module in CLI_ENTRIES
            and imp.lazy
        ):
            continue
        how = "lazily " if imp.lazy else ""
        bad.append(f"{imp.module}:{imp.line} {how}imports {imp.target} ({layer} -> {target_layer})")
    return bad


def test_every_module_respects_the_layers() -> None:
    imports = all_imports()
    assert len({i.module for i in imports}) > 40  # the walk really read the package
    assert violations(imports) == []


def test_the_rule_catches_what_it_should() -> None:
    """The checker itself can fail: each of these is refused."""
    cases = [
        Import("traystatus.core.watch.monitor", "traystatus.cli.exitcodes", True, 1),
        Import("traystatus.core.model.state", "PySide6.QtCore", False, 1),
        Import("traystatus.demo.cli", "traystatus.cli.main", True, 1),
        Import("traystatus.cli.main", "traystatus.demo.cli", False, 1),  # not lazy
        Import("traystatus.cli.watching", "traystatus.app.main", True, 1),  # not the entry
        Import("traystatus.desktop.check", "traystatus.app.tray", True, 1),
        Import("traystatus.serve.hub", "traystatus.cli.target", False, 1),
        # rooms: only downwards; private modules stay in their room
        Import("traystatus.core.model.state", "traystatus.core.watch.monitor", True, 1),
        Import("traystatus.core.words.wording", "traystatus.core.model.state", False, 1),
        Import("traystatus.core.pg.link", "traystatus.core.config.profiles", False, 1),
        Import("traystatus.core.watch.monitor", "traystatus.core.relay.client", True, 1),
        Import("traystatus.core.relay.client", "traystatus.core.watch._schedule", False, 1),
        Import("traystatus.app.slot", "traystatus.core.watch._builtin_sql", False, 1),
        Import("traystatus.core.stray", "traystatus.core.model.state", False, 1),
        # the app's pure modules stay free of Qt
        Import("traystatus.app.joblabel", "PySide6.QtGui", True, 1),
        Import("traystatus.app.palette", "traystatus.app.icons", False, 1),
    ]
    assert len(violations(cases)) == len(cases)
    fine = [
        Import("traystatus.cli.main", "traystatus.demo.cli", True, 1),
        Import("traystatus.app.settings", "traystatus.desktop.autostart", True, 1),
        Import("traystatus.demo.cli", "traystatus._paths", False, 1),
        Import("traystatus.core.relay.client", "traystatus.core.watch.base", False, 1),
        Import("traystatus.core.watch.builtin", "traystatus.core.watch._builtin_sql", False, 1),
        Import("traystatus.core.source", "traystatus.core.relay.client", True, 1),
        Import("traystatus.app.joblabel", "traystatus.app.palette", False, 1),
        Import("traystatus.core.config.password", "traystatus.core.pg.connect", False, 1),
    ]
    assert violations(fine) == []


def test_core_is_only_rooms() -> None:
    """Every module of core lives in a room (or is the seam, source.py): a newcomer can name
    where a new module goes."""
    core = PACKAGE / "core"
    loose = sorted(p.name for p in core.glob("*.py") if p.name not in {"__init__.py", "source.py"})
    rooms = sorted(p.name for p in core.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert loose == []
    assert rooms == sorted(ROOM_ORDER)


def test_no_private_attribute_of_an_asyncio_loop_is_read() -> None:
    """Sources record the loop's thread when run() starts (``loop._thread_id`` is private
    and qasync's loops need not have it)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == "_thread_id":
                bad.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "_thread_id":
                bad.append(f"{path.name}:{node.lineno}")
    assert bad == []


# -- pure rooms: no I/O -----------------------------------------------------------------------
# model/ and words/ are data and words: no sockets, files, processes, threads, event loops,
# database connections or logging. pg/diagnosis.py is the pure half of a diagnosis (the one
# TCP look is pg/probe.py): the same rule, plus only connect.py's pure readers of an error.
PURE = ("core/model", "core/words", "core/pg/diagnosis.py")
IO_MODULES = frozenset({
    "asyncio", "socket", "ssl", "select", "selectors", "subprocess", "threading",
    "multiprocessing", "concurrent", "io", "os", "pathlib", "shutil", "tempfile", "glob",
    "ctypes", "logging", "urllib.request", "http", "aiohttp", "keyring", "platformdirs",
    "sqlite3", "psycopg_pool",
})
# psycopg: parsing a conninfo and reading an exception's fields, never a connection
PURE_PSYCOPG = frozenset({"psycopg.conninfo.conninfo_to_dict", "psycopg.conninfo.make_conninfo",
                          "psycopg.errors", "psycopg"})
IO_CALLS = frozenset({"open", "input", "print", "exec", "eval", "__import__"})
# pg/connect.py opens connections; diagnosis may use only its readers of an error or conninfo
PURE_OF_CONNECT = frozenset({"sqlstate_of", "plain", "host_count", "per_host_timeout",
                             "ConnectTimedOut"})
IO_ATTRIBUTES = frozenset({"connect", "cursor", "execute", "Connection", "AsyncConnection",
                           "read_text", "write_text", "read_bytes", "write_bytes"})


def impurities(source: str, where: str = "") -> list[str]:
    """What in ``source`` is I/O: imports of I/O modules, of traystatus rooms that do I/O
    (pg, config, watch, relay, source), psycopg beyond parsing, calls like ``open``, and
    connecting or executing through any name."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            top = parts[0]
            io = any(".".join(parts[:i]) in IO_MODULES for i in range(1, len(parts) + 1))
            if top == "psycopg" and name not in PURE_PSYCOPG:
                io = True
            if top == "traystatus" and len(parts) > 2 and parts[1] == "core":
                room = parts[2]
                if room == "pg":
                    io = not (where.endswith("diagnosis.py") and parts[3:4] in (
                        ["diagnosis"], ["conninfo"], ["connect"]))
                else:
                    io = room not in {"model", "words"}
            if io:
                bad.append(f"{where}:{getattr(node, 'lineno', 0)} imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in IO_CALLS:
            bad.append(f"{where}:{node.lineno} calls {node.func.id}()")
        if isinstance(node, ast.Attribute):
            if node.attr in IO_ATTRIBUTES:
                bad.append(f"{where}:{node.lineno} uses .{node.attr}")
            if isinstance(node.value, ast.Name) and node.value.id == "pgconnect" and \
                    node.attr not in PURE_OF_CONNECT:
                bad.append(f"{where}:{node.lineno} uses pgconnect.{node.attr}")
    return bad


def test_model_words_and_diagnosis_do_no_io() -> None:
    files = [p for part in PURE for p in sorted((PACKAGE / part).rglob("*.py"))
             if not part.endswith(".py")] + [PACKAGE / p for p in PURE if p.endswith(".py")]
    assert len(files) > 10
    bad = []
    for path in files:
        bad += impurities(path.read_text(encoding="utf-8"),
                          str(path.relative_to(PACKAGE)))
    assert bad == []


def test_the_purity_rule_catches_what_it_should() -> None:
    refused = [
        "import asyncio", "import os.path", "from pathlib import Path", "import socket",
        "import psycopg.pq", "from psycopg import AsyncConnection", "import logging",
        "from traystatus.core.pg.link import Link",
        "from traystatus.core.config import credentials",
        "open('x')", "x.connect()", "conn.execute('select 1')", "p.read_text()",
        "from urllib.request import urlopen", "from concurrent.futures import Executor",
    ]
    for source in refused:
        assert impurities(source), source
    assert impurities("from traystatus.core.pg import connect as pgconnect\n"
                      "pgconnect.Connection.connect('')", "core/pg/diagnosis.py")
    assert impurities("from traystatus.core.pg import connect", "core/model/state.py")
    fine = [
        "import enum", "from dataclasses import dataclass", "import json", "import re",
        "from psycopg.conninfo import conninfo_to_dict, make_conninfo",
        "from urllib.parse import urlsplit", "from traystatus.core.words.wording import plural",
        "import psycopg\nisinstance(ex, psycopg.Error)", "from psycopg import errors",
    ]
    for source in fine:
        assert impurities(source) == [], source
    assert impurities("from traystatus.core.pg import connect as pgconnect\n"
                      "pgconnect.sqlstate_of(ex)", "core/pg/diagnosis.py") == []


# -- the relay client needs only the watch engine's shell ----------------------------------------
RELAY_FROM_WATCH = {"traystatus.core.watch.base", "traystatus.core.watch.backoff",
                    "traystatus.core.watch.options"}


def test_the_relay_client_takes_only_the_shell_backoff_and_timing_from_watch() -> None:
    """SourceBase (listeners, details refcount, stop), Backoff and MonitorOptions: no
    Monitor, reader, schedule or ledger, and nothing of pg or config (a relay never talks to
    a database). Read with ``ast``: what relay/ imports, and everything importing it loads
    (module-level imports, followed)."""
    imports = all_imports()
    targets = {i.target for i in imports if _room(i.module) == "relay"}
    assert {t for t in targets if _room(t) == "watch"} == RELAY_FROM_WATCH
    assert not {t for t in targets if _room(t) in ("pg", "config")}
    eager: dict[str, set[str]] = {}
    for i in imports:
        if not i.lazy:
            eager.setdefault(i.module, set()).add(i.target)
    loaded, todo = set(), ["traystatus.core.relay.client"]
    while todo:
        module = todo.pop()
        if module not in loaded:
            loaded.add(module)
            todo.extend(t for t in eager.get(module, ()) if t.startswith("traystatus."))
    assert "traystatus.core.model.state" in loaded  # the walk followed imports
    assert {m for m in loaded if _room(m) == "watch"} == RELAY_FROM_WATCH
    assert not {m for m in loaded if _room(m) in ("pg", "config")}
