"""The operations page at /ops in real headless Chromium (Debian's), driven by Playwright, against
`aitasks up` with auth on: the page asks for the key as the page at / does; its charts draw from
real traffic (the finished count rises as tasks finish); a failed task appears among the latest
failures and its retry button queues it again; a task's timeline shows its attempts; it fits a
phone and loads nothing from another origin. Screenshots of each step are saved in the test's
folder (one of them is docs/ops-page.png)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import shoot, this_origin_only
from tests.support.processes import Process, free_port, run_cli, service_env, wait_until_up


@dataclass
class Site:
    url: str
    key: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("ops")
    port = free_port()
    env = service_env(
        AITASKS_AUTH="on",
        AITASKS_OPS_SAMPLE_SECONDS="0.5",
        AITASKS_MOCK_LATENCY_MS="100",
        AITASKS_RETRY_BASE_SECONDS="0.01",
    )
    process = Process(["up", "--port", str(port)], env, folder)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        made = run_cli(["keys", "create", "--name", "operator"], env, folder)
        assert made.returncode == 0, made.stderr
        yield Site(f"http://127.0.0.1:{port}", made.stdout.strip().splitlines()[-1])
    finally:
        process.stop()


def submit(site: Site, prompt: str) -> str:
    answer = httpx.post(
        f"{site.url}/v1/chat/completions",
        json={"prompt": prompt, "model": "mock-chat", "conversation_id": None},
        headers={"authorization": f"Bearer {site.key}"},
    )
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def task(site: Site, task_id: str) -> dict[str, object]:
    got: dict[str, object] = httpx.get(
        f"{site.url}/v1/tasks/{task_id}", headers={"authorization": f"Bearer {site.key}"}
    ).json()
    return got


def wait_for(site: Site, task_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while (current := task(site, task_id))["status"] != status:
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    return current


def finished_total(page: Page) -> int:
    return int(page.get_by_test_id("finished-total").inner_text())


def test_the_operations_page(browser: Browser, site: Site, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    elsewhere = this_origin_only(context, site.url)
    page = context.new_page()
    asked: list[str] = []

    def give_key(dialog: object) -> None:
        asked.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept(site.key)  # type: ignore[attr-defined]

    page.on("dialog", give_key)
    page.goto(f"{site.url}/ops?refresh=1")
    # Auth is on: the page asked for the key, as the page at / does, and then read the figures.
    expect(page.get_by_test_id("workers-total")).to_have_text("1", timeout=10000)
    assert asked == ["This server needs an API key:"]
    before = finished_total(page)

    # Real traffic: the finished count rises and the charts draw it.
    for n in range(6):
        submit(site, f"Hello number {n}")
    failing = submit(site, "This one always fails [fail:retryable]")
    wait_for(site, failing, "FAILED")
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=finished-total]').textContent) >= n",
        arg=before + 7,
        timeout=15000,
    )
    assert finished_total(page) >= before + 7
    for chart in ("chart-finished", "chart-wait", "chart-run", "chart-lanes"):
        assert int(page.get_by_test_id(chart).get_attribute("data-points") or 0) > 0, chart
    expect(page.get_by_test_id("legend")).to_contain_text("mock")
    shoot(page, tmp_path, "1-charts")

    # The failed task is among the latest failures; its timeline shows each of its attempts.
    row = page.locator(f"[data-testid=failure][data-task='{failing}']")
    expect(row).to_be_visible(timeout=10000)
    expect(row).to_contain_text("provider_server_error")
    row.locator("a.task").click()
    steps = page.get_by_test_id("timeline-step")
    expect(steps).to_have_count(6)  # submitted, queued, three attempts, failed
    expect(steps.nth(2)).to_contain_text("attempt 1")
    expect(steps.nth(3)).to_contain_text("attempt 2")
    expect(steps.nth(4)).to_contain_text("attempt 3")
    expect(steps.nth(5)).to_contain_text("failed")
    expect(page.get_by_test_id("trace-id")).to_have_text("(not traced)")
    shoot(page, tmp_path, "2-timeline")

    # Its retry button queues it again: it runs (and fails) anew. On a page that does not refresh
    # while the test reads it: a refresh after the click drops the queued-again task from the
    # failures (it is PENDING now), and its row with it.
    failed_at = task(site, failing)["finished_at"]
    page.goto(f"{site.url}/ops?refresh=3600")
    row.get_by_test_id("retry").click()
    expect(row.get_by_test_id("retried")).to_contain_text("queued again (PENDING)")
    again = wait_for(site, failing, "FAILED")
    assert again["finished_at"] != failed_at and again["attempts"] == 3
    shoot(page, tmp_path, "3-retried")
    context.close()
    assert elsewhere == []


def test_the_operations_page_fits_a_phone(browser: Browser, site: Site, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.add_init_script(f"localStorage.setItem('aitasks-api-key', {site.key!r})")
    phone = context.new_page()
    phone.goto(f"{site.url}/ops?refresh=1")
    expect(phone.get_by_test_id("workers-total")).to_have_text("1", timeout=10000)
    expect(phone.get_by_test_id("chart-finished")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sideways
    shoot(phone, tmp_path, "4-phone")
    context.close()
