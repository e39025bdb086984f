import io

from PIL import Image

from aitasks.providers.base import ChatMessage, ChatRequest
from aitasks.providers.mock import MockProvider, mock_reply, render_png
from aitasks.routing import ModelTable


def test_reply_is_deterministic_and_reflects_the_context() -> None:
    first = [ChatMessage("user", "hello")]
    later = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "yo"),
        ChatMessage("user", "hello"),
    ]
    assert mock_reply(first) == mock_reply(list(first))
    assert "0 earlier turns" in mock_reply(first)
    assert "1 earlier turn " in mock_reply(later)
    assert mock_reply(first) != mock_reply(later)


async def test_reply_streams_in_pieces_that_add_up() -> None:
    spec = ModelTable.load(environ={}).resolve("mock-chat")
    messages = [ChatMessage("user", "tell me something")]
    pieces = [p async for p in MockProvider(latency_ms=5).stream_chat(ChatRequest(spec, messages))]
    assert len(pieces) > 5
    assert "".join(pieces) == mock_reply(messages)


def test_png_is_a_real_deterministic_image() -> None:
    png = render_png("a cat riding a bicycle in space", (256, 192))
    assert png == render_png("a cat riding a bicycle in space", (256, 192))
    assert png != render_png("a dog", (256, 192))
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (256, 192))
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 10  # a picture, not a blank
