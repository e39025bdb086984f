"""One headless Chromium per test module, and the site (`aitasks up`) its pages open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import WORKER_SLOTS, chromium
from tests.support.processes import Process, free_port, service_env, wait_until_up

HURRIED_MODEL = """
[models."mock-hurried"]
kind = "chat"
provider = "mock"
queue = "mock"
expires_after = 1
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    # A model whose tasks may wait a second to start, for the page to show one expire.
    models = folder / "models.toml"
    models.write_text(HURRIED_MODEL)
    # Replies take 1.5 s, so the test can watch one stream in.
    env = service_env(
        AITASKS_MOCK_LATENCY_MS="1500",
        AITASKS_MODELS=str(models),
        AITASKS_WORKER_CONCURRENCY=str(WORKER_SLOTS),
    )
    process = Process(["up", "--port", str(port)], env, folder)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept("Renamed chat"))
    opened.goto(site)
    yield opened
    context.close()
