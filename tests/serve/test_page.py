"""The web page of ``traystatus serve`` in a real browser: Debian's Chromium, driven by
Playwright for Python through the system binary (no browser download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import playwright.async_api as playwright_api  # the test extra: never skipped
import psycopg
import pytest
import pytest_asyncio

from tests.serve.conftest import START_TASK, TOKEN, served, until
from tests.sql.conftest import add_job

CHROMIUM = os.environ.get("TRAYSTATUS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'">Q3 <b>enterprises</b>'


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/apt-packages.txt)")
    async with playwright_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def _save(page_png: bytes, tmp: Path, name: str) -> Path:
    out = tmp / name
    out.write_bytes(page_png)
    if os.environ.get("TRAYSTATUS_UPDATE_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        (DOC_IMAGES / name).write_bytes(page_png)
    return out


@pytest.mark.asyncio
async def test_page_shows_states_live_and_opens_details(
    db_dsn: str, tmp_path: Path, browser: playwright_api.Browser
) -> None:
    expect = playwright_api.expect
    async with served(db_dsn, tmp_path) as srv:
        page = await browser.new_page(viewport={"width": 720, "height": 520})
        # Without a token: a page that says what to do, not the indicator.
        resp = await page.goto(f"{srv.url}/")
        assert resp is not None and resp.status == 401
        await expect(page.locator("body")).to_contain_text("?token=")

        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        await page.goto(f"{srv.url}/?token={TOKEN}")
        word = page.locator("#word")
        await expect(word).to_have_text("Stable", timeout=15_000)
        await expect(page.locator("#badge")).to_have_attribute("data-state", "stable")
        _save(await page.screenshot(), tmp_path, "serve-page-stable.png")

        with psycopg.connect(db_dsn, autocommit=True) as c:
            add_job(c, "processing_data", slug="lu_2026_q3",
                    description="Legal units 2026 Q3", total_rows=12000, imported_rows=5100,
                    import_completed_pct=42.5, import_rows_per_sec=800)
            c.execute(START_TASK)
        await expect(word).to_have_text("Processing", timeout=15_000)  # no reload
        await expect(page.locator("#badge")).to_have_attribute("data-state", "processing")
        assert srv.hub.details_clients == 0  # nothing read while the modal is closed
        assert srv.monitor.counters.details_reads == 0

        await page.click("#open")
        dialog = page.locator("#details")
        await expect(dialog).to_be_visible()
        await expect(dialog).to_contain_text("Import jobs", timeout=15_000)
        await expect(dialog).to_contain_text("Importing 43 %")
        await expect(dialog).to_contain_text("5,100 of 12,000 rows")
        await expect(dialog).to_contain_text("Analytics tasks: 1")
        await expect(dialog).to_contain_text("Legal units 2026 Q3")
        await until(lambda: srv.hub.details_clients == 1, what="the modal's details socket")
        shot = _save(await page.screenshot(), tmp_path, "serve-page-details.png")
        assert shot.stat().st_size > 5000

        # Live while open; and a job description is data, never markup.
        with psycopg.connect(db_dsn, autocommit=True) as c:
            add_job(c, "upload_completed", slug="hostile", description=HOSTILE)
        await expect(dialog).to_contain_text(HOSTILE, timeout=15_000)
        assert await dialog.locator("img").count() == 0
        assert await page.title() == "StatBus status"

        await page.click("#close")
        await expect(dialog).to_be_hidden()
        await until(lambda: srv.hub.details_clients == 0, what="details socket closed")
        await until(lambda: srv.monitor.details_subscribers == 0, what="details unsubscribed")
        assert errors == []
        await page.close()


@pytest.mark.asyncio
async def test_page_names_every_state_in_words_and_the_review_hold(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    """Every state the server can send, pushed through the real hub and endpoints by a
    source that says what the test wants (the database side has its own tests)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from aiohttp import web

    from tests.serve.test_hub import FakeSource
    from traystatus.core.model.state import Problem, ReviewBlock, State, Status
    from traystatus.core.model.upgrade import Upgrade, UpgradePhase
    from traystatus.serve.app import AppOptions, make_app
    from traystatus.serve.auth import Authenticator, own_origins
    from traystatus.serve.hub import Hub

    expect = playwright_api.expect
    source = FakeSource()
    source.status = Status(State.CONNECTING)
    options = AppOptions()
    app = make_app(Hub(source), Authenticator(no_auth=True), options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    options.own_origins = own_origins("http", "127.0.0.1", port)  # as serve() sets them
    try:
        page = await browser.new_page(viewport={"width": 720, "height": 360})
        await page.goto(f"http://127.0.0.1:{port}/")
        word, badge = page.locator("#word"), page.locator("#badge")
        await expect(word).to_have_text("Connecting…")
        at = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
        running = Upgrade(UpgradePhase.RUNNING, 3, "v2026.12.0", at, at)
        cases = [
            (Status(State.STABLE, review=ReviewBlock(((7, "lu_2026_q3"),), 2)),
             "Stable", "Waiting for review: lu_2026_q3. 2 imports are held back"),
            (Status(State.PROCESSING), "Processing", None),
            (Status(State.DISCONNECTED, problem=Problem.STALE,
                    message="The server at db:5432 stopped answering."),
             "Disconnected", "stopped answering"),
            (Status(State.ERROR, problem=Problem.AUTH_FAILED,
                    message="The password for serve@db was refused."),
             # the server's own words stay in its log (they name its login and host)
             "Error", "cannot log in to the database"),
            (Status(State.STABLE, upgrade=Upgrade(UpgradePhase.SCHEDULED, 3, "v2026.12.0",
                                                   scheduled_at=at)),
             "Stable", "StatBus will be upgraded at "),
            (Status(State.UPGRADING, upgrade=running), "Upgrading",
             "StatBus is being upgraded since "),
            (Status(State.UPGRADING, problem=Problem.CONNECTION_LOST, message="x",
                    upgrade=running), "Upgrading", "down for its upgrade"),
            (Status(State.STABLE, upgrade=replace(running, phase=UpgradePhase.ROLLED_BACK,
                                                   error="MIGRATION_FAILED", ended_at=at)),
             "Stable", "The StatBus upgrade failed and was rolled back: MIGRATION_FAILED."),
        ]
        for status, text, extra in cases:
            source.emit(status)
            await expect(word).to_have_text(text)
            await expect(badge).to_have_attribute("data-state", status.state.value)
            if extra:
                await expect(page.locator("main")).to_contain_text(extra)
            if status.review is not None:
                _save(await page.screenshot(), tmp_path, "serve-page-review.png")
            if status.state is State.UPGRADING and status.problem is None:
                _save(await page.screenshot(), tmp_path, "serve-page-upgrading.png")
        assert await page.locator("#review").is_hidden()  # gone with the hold
        await page.close()
    finally:
        await runner.cleanup()


SEED_HOOK = """
async () => {
  // The original plan's useSystemStability() and SystemStatusModal, verbatim where they
  // talk to the server: no token in the URL, the browser's cookie does the rest.
  const protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const wsUrl = `${protocol}//${window.location.host}/api/system-stability`;
  const socket = new WebSocket(wsUrl);
  const first = await new Promise((resolve) => {
    socket.onmessage = (event) => resolve(JSON.parse(event.data));
    socket.onerror = () => resolve(null);
  });
  socket.close();
  const response = await fetch('/api/system-status-details');
  const detailedStatus = response.ok ? await response.json() : null;
  return {
    stable: first === null ? 'refused' : first.stable,
    status: response.status,
    jobs: detailedStatus && detailedStatus.import_jobs.length,
    tasks: detailedStatus && detailedStatus.analytics_tasks.length,
    system_stable: detailedStatus && detailedStatus.system_stable,
  };
}
"""


@pytest.mark.asyncio
async def test_the_seed_react_hook_works_unchanged_with_statbus_cookie(
    db_dsn: str, tmp_path: Path, browser: playwright_api.Browser
) -> None:
    """Behind StatBus's proxy the page's origin is the server's, and StatBus's login has set
    the `statbus` cookie (an HS256 access token): docs/serve.md's claim, in a browser."""
    import base64
    import hashlib
    import hmac
    import json
    import time

    secret = b"k" * 48
    secret_file = tmp_path / "jwt-secret"
    secret_file.write_bytes(secret)
    secret_file.chmod(0o600)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    with psycopg.connect(db_dsn) as c:  # a role that exists (a deleted user's is refused)
        role = str(c.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    body = b64(json.dumps({"email": "analyst@example.org", "role": role,
                           "type": "access", "exp": int(time.time()) + 600}).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    jwt = f"{head}.{body}.{sig}"

    async with served(db_dsn, tmp_path, jwt_secret_file=str(secret_file)) as srv:
        for cookie, expected in ((None, "refused"), (jwt, True)):
            context = await browser.new_context()
            if cookie:
                await context.add_cookies([{"name": "statbus", "value": cookie,
                                            "url": srv.url, "httpOnly": True,
                                            "sameSite": "Strict"}])
            page = await context.new_page()
            await page.goto(f"{srv.url}/healthz")  # any page of the same origin
            result = await page.evaluate(SEED_HOOK)
            assert result["stable"] == expected, result
            if cookie:
                assert result == {"stable": True, "status": 200, "jobs": 0, "tasks": 0,
                                  "system_stable": True}
            else:
                assert result["status"] == 401
            await context.close()


@pytest.mark.asyncio
async def test_page_says_when_its_token_is_withdrawn(
    db_dsn: str, tmp_path: Path, browser: playwright_api.Browser
) -> None:
    expect = playwright_api.expect
    async with served(db_dsn, tmp_path, recheck=0.5) as srv:
        page = await browser.new_page()
        await page.goto(f"{srv.url}/?token={TOKEN}")
        await expect(page.locator("#word")).to_have_text("Stable", timeout=15_000)
        # The administrator rotates the tokens (read again on change): the server closes
        # the page's open socket itself (4401), its handshakes are now refused, and the
        # page says why.
        await until(lambda: srv.hub.clients == 1, what="the page's socket")
        (tmp_path / "tokens").write_text("a-brand-new-token-0123456789\n")
        await expect(page.locator("#word")).to_have_text("Error", timeout=15_000)
        await expect(page.locator("#reason")).to_contain_text("token is not accepted")
        await page.close()


@pytest.mark.asyncio
async def test_page_says_when_it_will_be_stable(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    """Issue 22: the estimate in the server's frames (progress.estimate), in local time, with
    how it was reached; unknown says unknown; a description of it is text, never markup."""
    from datetime import UTC, datetime, timedelta

    from aiohttp import web

    from tests.serve.test_hub import FakeSource
    from traystatus.core.model.estimate import Estimate
    from traystatus.core.model.progress import Progress
    from traystatus.core.model.state import State, Status
    from traystatus.serve.app import AppOptions, make_app
    from traystatus.serve.auth import Authenticator, own_origins
    from traystatus.serve.hub import Hub

    expect = playwright_api.expect
    source = FakeSource()
    now = datetime.now(UTC)
    known = Estimate(now + timedelta(minutes=40), now + timedelta(minutes=25),
                     now + timedelta(minutes=65),
                     "derive took 35 min–42 min after imports of this size this week (3 runs)")
    progress = Progress.from_json({"jobs": [{"id": 1, "slug": "lu", "state": "processing_data",
                                             "total_rows": 100, "import_pct": 40}]})
    source.status = Status(State.PROCESSING, progress=Progress(
        progress.jobs, estimate=known))
    options = AppOptions()
    app = make_app(Hub(source), Authenticator(no_auth=True), options)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    options.own_origins = own_origins("http", "127.0.0.1", port)
    try:
        page = await browser.new_page(viewport={"width": 720, "height": 360},
                                      timezone_id="UTC", locale="en-GB")
        await page.goto(f"http://127.0.0.1:{port}/")
        est = page.locator("#estimate")
        want = f"Stable at about {known.at:%H:%M} ({known.low:%H:%M}–{known.high:%H:%M})"
        await expect(est).to_have_text(want)
        await expect(page.locator("#estimate-how")).to_have_text(
            "Derive took 35 min–42 min after imports of this size this week (3 runs).")
        _save(await page.screenshot(), tmp_path, "serve-page-estimate.png")
        source.emit(Status(State.PROCESSING, progress=Progress(progress.jobs, estimate=Estimate(
            None, None, None, HOSTILE))))
        await expect(est).to_have_text("When stable: unknown")
        assert await page.locator("main img").count() == 0
        source.emit(Status(State.STABLE))
        await expect(est).to_be_hidden()
        await page.close()
    finally:
        await runner.cleanup()
