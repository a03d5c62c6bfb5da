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

CHROMIUM = os.environ.get("TRAYSTATUS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'">Q3 <b>enterprises</b>'


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[object]:
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
    db_dsn: str, tmp_path: Path, browser: object
) -> None:
    expect = playwright_api.expect
    async with served(db_dsn, tmp_path) as srv:
        page = await browser.new_page(viewport={"width": 720, "height": 520})  # type: ignore[attr-defined]
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
            c.execute(
                "INSERT INTO public.import_job (slug, description, definition_id, state, "
                "total_rows, imported_rows, import_completed_pct, import_rows_per_sec) "
                "VALUES ('q3', %s, 1, 'processing_data', 12000, 5100, 42.5, 800)",
                (HOSTILE,),
            )
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
        # A job description is data, never markup.
        await expect(dialog).to_contain_text(HOSTILE)
        assert await dialog.locator("img").count() == 0
        assert await page.title() == "StatBus status"
        await until(lambda: srv.hub.details_clients == 1, what="the modal's details socket")
        shot = _save(await page.screenshot(), tmp_path, "serve-page-details.png")
        assert shot.stat().st_size > 5000

        await page.click("#close")
        await expect(dialog).to_be_hidden()
        await until(lambda: srv.hub.details_clients == 0, what="details socket closed")
        await until(lambda: srv.monitor.details_subscribers == 0, what="details unsubscribed")
        assert errors == []
        await page.close()
