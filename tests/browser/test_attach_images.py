"""The web page attaches images, in real headless Chromium: by the attach button, by pasting and
by dropping; the user's message shows them, the mock's reply names each one's size, and history
shows them again after a reload."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect

from tests.support.browser import shoot


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def loaded(page: Page, selector: str) -> None:
    image = page.locator(selector).last
    expect(image).to_be_visible(timeout=10000)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )


def put_on_the_page(page: Page, event: str, data: bytes, name: str) -> None:
    """Paste into the prompt, or drop on the composer, a PNG file (as a DataTransfer would)."""
    page.evaluate(
        """([event, data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            const target = event === "paste" ? document.getElementById("prompt")
                                             : document.getElementById("composer");
            const how = { bubbles: true, cancelable: true };
            const made = event === "paste"
                ? new ClipboardEvent("paste", { clipboardData: transfer, ...how })
                : new DragEvent("drop", { dataTransfer: transfer, ...how });
            target.dispatchEvent(made);
        }""",
        [event, base64.b64encode(data).decode(), name],
    )


def test_attach_paste_and_drop_images_then_see_them_in_history(page: Page, tmp_path: Path) -> None:
    page.get_by_test_id("model").select_option("mock-chat")
    page.get_by_test_id("attach-input").set_input_files(
        files=[{"name": "wide.png", "mimeType": "image/png", "buffer": png(64, 48)}]
    )
    expect(page.get_by_test_id("attachment")).to_have_count(1, timeout=5000)
    put_on_the_page(page, "paste", png(30, 20), "pasted.png")
    expect(page.get_by_test_id("attachment")).to_have_count(2, timeout=5000)
    put_on_the_page(page, "drop", png(11, 22), "dropped.png")
    expect(page.get_by_test_id("attachment")).to_have_count(3, timeout=5000)
    loaded(page, "#attachments img")
    shoot(page, tmp_path, "1-attached")

    page.get_by_test_id("prompt").fill("What are these?")
    page.get_by_test_id("send").click()
    reply = page.get_by_test_id("message-assistant").last
    expect(reply).to_contain_text("Image 1 is 64x48. Image 2 is 30x20. Image 3 is 11x22.",
                                  timeout=15000)  # fmt: skip
    expect(page.get_by_test_id("message-user").last.locator("img")).to_have_count(3)
    expect(page.get_by_test_id("attachment")).to_have_count(0)  # sent: the tray is empty
    loaded(page, "[data-testid=message-user] img")
    shoot(page, tmp_path, "2-replied")

    page.reload()
    user = page.get_by_test_id("message-user").last
    expect(user).to_contain_text("What are these?", timeout=5000)
    expect(user.locator("img")).to_have_count(3)
    loaded(page, "[data-testid=message-user] img")
    shoot(page, tmp_path, "3-history")
