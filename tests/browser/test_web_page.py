"""The web page in real headless Chromium (Debian's), driven by Playwright: chat and see it stream
in, make an image and see it load, switch, rename and delete conversations, reload and find them.
Screenshots of each step are saved in the test's folder."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from aitasks.providers.base import ChatMessage
from aitasks.providers.mock import mock_reply
from aitasks.routing import ModelTable
from tests.support.browser import WORKER_SLOTS, shoot, this_origin_only


def test_a_chat_reply_streams_in(page: Page, tmp_path: Path) -> None:
    page.get_by_test_id("model").select_option("mock-chat")
    page.get_by_test_id("prompt").fill("Tell me about the sea")
    page.get_by_test_id("send").click()
    reply = page.get_by_test_id("message-assistant").last
    expect(reply).to_contain_text("Mock reply", timeout=5000)  # the first words, streamed
    partial = reply.inner_text()
    shoot(page, tmp_path, "1-streaming")
    expected = mock_reply([ChatMessage("user", "Tell me about the sea")])
    expect(reply.locator(".text")).to_have_text(expected, timeout=10000)
    assert len(partial) < len(expected)  # it was seen before it was whole
    expect(page.get_by_test_id("message-user").last).to_have_text("Tell me about the sea")
    expect(page.get_by_test_id("conversation").first).to_contain_text("Tell me about the sea")
    shoot(page, tmp_path, "2-replied")


def test_an_image_turn_shows_its_image(page: Page, tmp_path: Path) -> None:
    page.get_by_test_id("new-conversation").click()
    page.get_by_test_id("model").select_option("stable-diffusion-3")
    page.get_by_test_id("prompt").fill("a cat riding a bicycle in space")
    page.get_by_test_id("send").click()
    image = page.get_by_test_id("message-assistant").last.locator("img")
    expect(image).to_be_visible(timeout=15000)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    shoot(page, tmp_path, "3-image")


def test_conversations_switch_rename_delete_and_survive_a_reload(
    page: Page, tmp_path: Path
) -> None:
    page.get_by_test_id("new-conversation").click()
    page.get_by_test_id("model").select_option("mock-chat")
    page.get_by_test_id("prompt").fill("A conversation to delete")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("message-assistant").last).to_contain_text(
        "Mock reply", timeout=10000
    )
    conversations = page.get_by_test_id("conversation")
    expect(conversations).to_have_count(3, timeout=5000)

    conversations.filter(has_text="Tell me about the sea").click()  # switch
    expect(page.get_by_test_id("message-user").first).to_have_text("Tell me about the sea")
    page.get_by_test_id("rename").click()  # the dialog answers "Renamed chat"
    expect(conversations.filter(has_text="Renamed chat")).to_have_count(1)

    page.reload()  # the list, and the open conversation, come back from the server
    expect(page.get_by_test_id("conversation")).to_have_count(3)
    expect(page.get_by_test_id("message-user").first).to_have_text("Tell me about the sea")

    page.get_by_test_id("conversation").filter(has_text="A conversation to delete").click()
    page.get_by_test_id("delete").click()  # confirmed by the dialog handler
    expect(page.get_by_test_id("conversation")).to_have_count(2)
    expect(page.get_by_test_id("conversation").filter(has_text="to delete")).to_have_count(0)
    shoot(page, tmp_path, "4-after-delete")


def test_the_page_fits_a_phone(browser: Browser, site: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    phone.goto(site)
    expect(phone.get_by_test_id("prompt")).to_be_visible()
    expect(phone.get_by_test_id("send")).to_be_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing sticks out sideways
    shoot(phone, tmp_path, "5-phone")
    context.close()


def test_the_api_docs_render_from_this_origin_alone(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    """/docs is Swagger UI served by the gateway itself: it draws with no network but this
    origin (no CDN script on the origin where the web page keeps the API key)."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    elsewhere = this_origin_only(context, site)
    docs = context.new_page()
    docs.goto(f"{site}/docs")
    expect(docs.locator(".opblock-summary-path", has_text="/v1/chat/completions")).to_be_visible()
    shoot(docs, tmp_path, "api-docs")
    context.close()
    assert elsewhere == []


def test_the_model_picker_starts_on_the_first_chat_model_and_remembers_the_last(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    """A fresh page offers the table's first chat model (as /v1/models lists the table), not
    whichever sorts first; the model chosen last is chosen again after a reload."""
    table_first = next(m.name for m in ModelTable.load().models.values() if m.kind == "chat")
    listed = httpx.get(f"{site}/v1/models").json()["data"]
    assert next(m["id"] for m in listed if m["kind"] == "chat") == table_first
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    fresh = context.new_page()
    fresh.goto(site)
    picker = fresh.get_by_test_id("model")
    expect(picker).to_have_value(table_first)
    assert table_first == "gemini-2.5-flash"  # the table's first, though not the first by name

    picker.select_option("deepseek-chat")
    fresh.reload()
    expect(fresh.get_by_test_id("model")).to_have_value("deepseek-chat")
    fresh.get_by_test_id("model").select_option("mock-chat")
    fresh.get_by_test_id("prompt").fill("Which model is this?")
    fresh.get_by_test_id("send").click()
    expect(fresh.get_by_test_id("message-assistant").last).to_contain_text(
        "Mock reply", timeout=10000
    )
    fresh.reload()
    expect(fresh.get_by_test_id("model")).to_have_value("mock-chat")
    shoot(fresh, tmp_path, "model-remembered")
    context.close()


def test_a_count_of_one_reads_1_message(page: Page, tmp_path: Path) -> None:
    """A conversation whose one turn failed holds one message: the list says "1 message"; one
    with a reply says "2 messages"."""
    for prompt in ("Only one message [fail:fatal]", "Two messages"):
        page.get_by_test_id("new-conversation").click()
        page.get_by_test_id("model").select_option("mock-chat")
        page.get_by_test_id("prompt").fill(prompt)
        page.get_by_test_id("send").click()
        expect(page.get_by_test_id("send")).to_be_enabled(timeout=10000)
    conversations = page.get_by_test_id("conversation")
    one = conversations.filter(has_text="Only one message")
    expect(one).to_contain_text("1 message · mock-chat", timeout=10000)
    expect(one).not_to_contain_text("1 messages")
    expect(conversations.filter(has_text="Two messages")).to_contain_text("2 messages · mock-chat")
    shoot(page, tmp_path, "one-message")


def test_a_batch_shows_its_progress_until_it_completes(
    page: Page, site: str, tmp_path: Path
) -> None:
    requests = [{"prompt": f"line {n}", "model": "mock-chat"} for n in range(12)]
    accepted = httpx.post(f"{site}/v1/batches", json=requests, timeout=10)
    assert accepted.status_code == 202, accepted.text
    page.reload()
    batch = page.get_by_test_id("batch").first
    expect(batch).to_contain_text(accepted.json()["id"][:8], timeout=5000)
    expect(batch.locator("progress")).to_have_attribute("max", "12")
    shoot(page, tmp_path, "batch-running")
    expect(batch).to_contain_text("completed: 12/12", timeout=30000)
    expect(batch.locator("progress")).to_have_attribute("value", "12")
    shoot(page, tmp_path, "batch-completed")


def test_a_turn_past_its_deadline_shows_expired(page: Page, site: str, tmp_path: Path) -> None:
    # Every worker slot busy for a while, so the turn waits past its one-second deadline.
    for n in range(WORKER_SLOTS):
        body = {"prompt": f"busy {n} [latency:5000]", "model": "mock-chat"}
        busy = httpx.post(f"{site}/v1/chat/completions", json=body, timeout=10)
        assert busy.status_code == 202
    page.get_by_test_id("new-conversation").click()
    page.get_by_test_id("model").select_option("mock-hurried")
    page.get_by_test_id("prompt").fill("Too late for this")
    page.get_by_test_id("send").click()
    reply = page.get_by_test_id("message-assistant").last
    expect(reply.locator(".status")).to_contain_text("expired", timeout=15000)
    shoot(page, tmp_path, "expired")
