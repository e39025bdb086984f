"""Debian's Chromium driven by Playwright, for the browser tests (Playwright's own browser build
cannot be fetched here), and the screenshots they save."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# The web page's site runs this many worker slots, said outright: a test fills them all to keep a
# turn waiting.
WORKER_SLOTS = 8


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed again afterwards; a missing one fails the test, never skips."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (scripts/test installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def this_origin_only(context: BrowserContext, origin: str) -> list[str]:
    """Let the context's pages load from `origin` alone: any other request is aborted and its URL
    kept in the list returned, for the test to find empty."""
    elsewhere: list[str] = []

    def only_origin(route: Route) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_origin)
    return elsewhere


def shoot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
