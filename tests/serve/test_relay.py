"""The relay source: ``status|wait|watch --relay`` and RelaySource against a real server."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import psycopg
import pytest

from tests.cli.conftest import Cli
from tests.serve.conftest import (
    FAST,
    FINISH_TASKS,
    REPO,
    SCRIPT,
    START_TASK,
    served,
    token_file,
    until,
)
from traystatus.core.model.details import Details, WorkSummary
from traystatus.core.model.state import Problem, State, Status
from traystatus.core.relay.client import RelaySource, endpoints
from traystatus.core.source import is_relay, open_source


def _run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for s in statements:
            c.execute(s)


async def cli(*args: str, within: float = 60) -> tuple[int, str, str]:
    env = {"PYTHONPATH": str(REPO), "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_urls() -> None:
    assert endpoints("http://h:1")[:2] == ("ws://h:1/api/system-stability",
                                            "ws://h:1/api/job-details")
    assert endpoints("https://statbus.example.org/tray/api/system-stability?token=x")[:2] == (
        "wss://statbus.example.org/tray/api/system-stability?token=x",
        "wss://statbus.example.org/tray/api/job-details?token=x",
    )
    assert is_relay("ws://h:1") and not is_relay("host=h dbname=x")
    for bad in ("ftp://h", "ws://", "h:8765", "ws://h:notaport"):
        with pytest.raises(ValueError):
            endpoints(bad)


@pytest.mark.asyncio
async def test_cli_relay_gives_the_same_output_and_exit_codes(
    db_dsn: str, tmp_path: Path
) -> None:
    tokens = token_file(tmp_path)
    async with served(db_dsn, tmp_path) as srv:
        relay = ["--relay", srv.url, "--token-file", tokens]
        direct = ["--dsn", db_dsn]
        for source in (direct, relay):
            assert await cli("status", *source) == (0, "stable\n", "")
        rc_d, out_d, _ = await cli("status", "--json", *direct)
        rc_r, out_r, _ = await cli("status", "--json", *relay)
        jd, jr = json.loads(out_d), json.loads(out_r)
        assert rc_d == rc_r == 0
        assert jr["source"] == "relay" and jd["source"] in ("installed", "builtin")
        assert set(jd) == set(jr) and jd["state"] == jr["state"] == "stable"
        same = {k for k in jd if k not in ("since", "source")}
        assert {k: jd[k] for k in same} == {k: jr[k] for k in same}

        _run(db_dsn, START_TASK)
        await until(lambda: srv.monitor.status.state is State.PROCESSING, what="processing")
        for source in (direct, relay):
            assert await cli("status", *source) == (1, "processing\n", "")
        rc, out, _ = await cli("status", "--details", *relay)
        assert rc == 1 and "analytics collect_changes: 1" in out
        rc, _, err = await cli("wait", "--timeout", "1", *relay)
        assert rc == 1 and "not stable after 1 s" in err

        waiter = asyncio.create_task(cli("wait", *relay))
        watcher = await asyncio.create_subprocess_exec(
            str(SCRIPT), "watch", "--json", *relay,
            env={"PYTHONPATH": str(REPO), "HOME": "/nonexistent"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert watcher.stdout is not None
        first = json.loads(await asyncio.wait_for(watcher.stdout.readline(), 30))
        assert first["state"] in ("connecting", "processing")
        await asyncio.sleep(1.0)
        _run(db_dsn, FINISH_TASKS)
        assert (await waiter)[0] == 0
        while True:
            line = json.loads(await asyncio.wait_for(watcher.stdout.readline(), 30))
            if line["state"] == "stable":
                assert line["class"] == "stable" and line["source"] == "relay"
                break
        watcher.terminate()
        assert await watcher.wait() == 143

        # refusals: exit 3 with one line saying what is wrong
        bad = tmp_path / "bad"
        bad.write_text("not-the-right-token-at-all\n")
        rc, out, err = await cli("status", "--relay", srv.url, "--token-file", str(bad))
        assert rc == 3 and "refused the token" in out and "Traceback" not in err
        rc, _, err = await cli("wait", "--relay", srv.url, "--token-file", str(bad))
        assert rc == 3 and "refused the token" in err
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, _ = await cli("status", "--relay", f"ws://127.0.0.1:{port}", "--timeout", "10")
    assert rc == 3 and "cannot be reached" in out
    rc, _, err = await cli("status", "--relay", "ftp://x", "--token-file", tokens)
    assert rc == 2 and "not a traystatus server URL" in err and len(err.splitlines()) == 1


@pytest.mark.asyncio
async def test_relay_source_details_lazily_and_summaries(db_dsn: str, tmp_path: Path) -> None:
    async with served(db_dsn, tmp_path) as srv:
        relay = open_source("ws" + srv.url[4:], FAST, token="test-token-0123456789abcdef")
        assert isinstance(relay, RelaySource)
        statuses: list[Status] = []
        details: list[Details] = []
        summaries: list[WorkSummary] = []
        relay.add_listener(statuses.append)
        relay.add_details_listener(details.append)
        relay.add_summary_listener(summaries.append)
        task = asyncio.create_task(relay.run())
        try:
            await until(lambda: relay.status.state is State.STABLE, what="stable via relay")
            assert relay.status.source == "relay"
            await asyncio.sleep(0.5)
            assert srv.hub.details_clients == 0 and details == []
            async with relay.details():
                await until(lambda: len(details) >= 1, what="details via relay")
                assert srv.hub.details_clients == 1
                assert details[-1].system_stable
                _run(db_dsn, START_TASK)
                await until(lambda: relay.status.state is State.PROCESSING, what="processing")
                await until(lambda: details[-1].analytics.active_total == 1, what="details")
            await until(lambda: srv.hub.details_clients == 0, what="details socket closed")
            told = len(details)
            _run(db_dsn, FINISH_TASKS)
            await until(lambda: relay.status.state is State.STABLE, what="stable again")
            await until(lambda: len(summaries) == 1, what="a work summary via relay")
            assert summaries[0].analytics_tasks_completed == 1
            assert len(details) == told  # none after the last subscriber left
            states: list[State] = []
            for s in statuses:  # progress while processing is news too: one per state here
                if not states or states[-1] is not s.state:
                    states.append(s.state)
            assert states == [State.CONNECTING, State.STABLE, State.PROCESSING, State.STABLE][
                1 if states[0] is State.STABLE else 0:]
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_relay_reconnects_when_the_server_comes_back(db_dsn: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = RelaySource(f"ws://127.0.0.1:{port}", FAST, token="test-token-0123456789abcdef")
    task = asyncio.create_task(relay.run())
    try:
        await until(lambda: relay.status.problem is Problem.UNREACHABLE, what="unreachable")
        async with served(db_dsn, tmp_path, port=port):
            await until(lambda: relay.status.state is State.STABLE, what="stable")
        # the server stopped (close frame 1001): the relay says so, and retries
        await until(lambda: relay.status.state is State.DISCONNECTED, what="lost")
        assert relay.status.problem in (Problem.CONNECTION_LOST, Problem.UNREACHABLE)
        async with served(db_dsn, tmp_path, port=port):
            await until(lambda: relay.status.state is State.STABLE, what="stable again")
        assert relay.counters.reconnects >= 1
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_a_profile_can_name_a_server_with_its_token_in_the_keychain(
    db_dsn: str, tmp_path: Path, cli_env: Cli
) -> None:
    async with served(db_dsn, tmp_path) as srv:
        added = await asyncio.to_thread(
            cli_env.run, "profile", "add", "srv", "--relay", srv.url, "--password-stdin",
            "--default", input="test-token-0123456789abcdef\n",
        )
        assert added.returncode == 0, added.stderr
        assert "token in the keychain" in added.stdout
        assert "test-token" not in cli_env.config_file.read_text()  # the token is not there
        done = await asyncio.to_thread(cli_env.run, "status", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["source"] == "relay"
        doctor = await asyncio.to_thread(cli_env.run, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "ok    server reachable: traystatus serve" in doctor.stdout
        assert "ok    token: accepted" in doctor.stdout
        assert "ok    server's database: connected (stable)" in doctor.stdout
        assert "database reachable" not in doctor.stdout  # no libpq probe of a URL
        wrong = await asyncio.to_thread(
            cli_env.run, "profile", "add", "srv", "--replace", "--relay", srv.url,
            "--password-stdin", input="a-wrong-token-0123456789\n",
        )
        assert wrong.returncode == 0, wrong.stderr
        doctor = await asyncio.to_thread(cli_env.run, "doctor")
        assert doctor.returncode == 3 and "FAIL  token: the server refused" in doctor.stdout
        listed = await asyncio.to_thread(cli_env.run, "profile", "list")
        assert f"traystatus server {srv.url}" in listed.stdout
        bad = await asyncio.to_thread(
            cli_env.run, "profile", "add", "mixed", "--relay", srv.url, "--host", "db",
            "--no-password",
        )
        assert bad.returncode == 2 and "one or the other" in bad.stderr


@pytest.mark.asyncio
async def test_relay_passes_the_builtin_source_and_its_note_on(
    bare_db_dsn: str, tmp_path: Path
) -> None:
    """No traystatus SQL: the server reads StatBus's own channels; its clients say so too."""
    tokens = token_file(tmp_path)
    async with served(bare_db_dsn, tmp_path) as srv:
        rc_d, out_d, _ = await cli("status", "--json", "--dsn", bare_db_dsn)
        rc_r, out_r, _ = await cli("status", "--json", "--relay", srv.url, "--token-file", tokens)
        jd, jr = json.loads(out_d), json.loads(out_r)
        assert rc_d == rc_r == 0 and jd["source"] == "builtin" and jr["source"] == "relay"
        assert jd["note"] and jr["note"] == jd["note"]


@pytest.mark.asyncio
async def test_relay_reconnect_now_and_stop_from_another_thread(
    db_dsn: str, tmp_path: Path
) -> None:
    async with served(db_dsn, tmp_path) as srv:
        relay = RelaySource(srv.url, FAST, token="test-token-0123456789abcdef")
        seen: list[State] = []
        relay.add_listener(lambda s: seen.append(s.state))
        task = asyncio.create_task(relay.run())
        await until(lambda: relay.status.state is State.STABLE, what="stable")
        relay.reconnect_now()
        await until(lambda: relay.counters.reconnects == 1, what="reconnected")
        await until(lambda: relay.status.state is State.STABLE, what="stable again")
        assert seen[-2:] == [State.CONNECTING, State.STABLE]
        await asyncio.to_thread(relay.stop)  # safe from any thread
        await asyncio.wait_for(task, 10)
        await until(lambda: srv.hub.clients == 0, what="the relay's socket closed")


@pytest.mark.asyncio
async def test_relay_carries_the_progress_the_server_shows(db_dsn: str, tmp_path: Path) -> None:
    from tests.sql.conftest import add_job

    async with served(db_dsn, tmp_path) as srv:
        relay = RelaySource(srv.url, FAST, token="test-token-0123456789abcdef")
        task = asyncio.create_task(relay.run())
        try:
            await until(lambda: relay.status.state is State.STABLE, what="stable")
            with psycopg.connect(db_dsn, autocommit=True) as c:
                add_job(c, "processing_data", slug="lu_q3", total_rows=1000,
                        imported_rows=420, import_completed_pct=42)
                c.execute(START_TASK)

            def same() -> bool:
                mine, theirs = relay.status.progress, srv.monitor.status.progress
                return (mine is not None and theirs is not None
                        and mine.to_json() == theirs.to_json())

            await until(same, what="the same progress via the relay")
            progress = relay.status.progress
            assert progress is not None and progress.overall_pct == 42
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_relay_carries_a_statbus_upgrade(db_dsn: str, tmp_path: Path) -> None:
    """The server relays ``upgrade`` and UPGRADING; the client validates and keeps them,
    and ``status --relay`` exits 1 while it runs."""
    from tests.core.test_monitor_upgrade import UPGRADE_TABLE
    from traystatus.core.model.upgrade import UpgradePhase

    _run(db_dsn, UPGRADE_TABLE)
    tokens = token_file(tmp_path)
    async with served(db_dsn, tmp_path) as srv:
        relay = RelaySource(srv.url, FAST, token="test-token-0123456789abcdef")
        task = asyncio.create_task(relay.run())
        try:
            await until(lambda: relay.status.state is State.STABLE, what="stable")
            _run(db_dsn, "INSERT INTO public.upgrade (commit_sha, commit_tags, summary, "
                 "state, scheduled_at) VALUES (repeat('b', 40), ARRAY['v2026.12.1'], 'x', "
                 "'scheduled', now() + interval '1 hour')")
            await until(lambda: relay.status.upgrade is not None, what="the schedule relayed")
            up = relay.status.upgrade
            assert up is not None and up.phase is UpgradePhase.SCHEDULED
            assert up.name == "v2026.12.1" and relay.status.state is State.STABLE
            _run(db_dsn, "UPDATE public.upgrade SET state = 'in_progress', started_at = now()")
            await until(lambda: relay.status.state is State.UPGRADING, what="upgrading")
            rc, out, _ = await cli("status", "--json", "--relay", srv.url,
                                   "--token-file", tokens)
            assert rc == 1 and json.loads(out)["state"] == "upgrading"
            assert json.loads(out)["upgrade"]["phase"] == "running"
            _run(db_dsn, "UPDATE public.upgrade SET state = 'completed', completed_at = now()")
            await until(lambda: relay.status.state is State.STABLE, what="stable again")
            done = relay.status.upgrade
            assert done is not None and done.phase is UpgradePhase.COMPLETED
            assert relay.counters.malformed_payloads == 0
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)
