from aitasks.store.models import Message
from aitasks.worker.context import build_context, estimate_tokens


def turn(
    n: int, question: str, answer: str | None, files: list[str] | None = None
) -> list[Message]:
    messages = [Message(turn=n, role="user", content=question, files=[])]
    if answer is not None:
        messages.append(Message(turn=n, role="assistant", content=answer, files=files or []))
    return messages


def test_history_comes_first_in_order_then_the_prompt() -> None:
    history = turn(1, "hi", "hello") + turn(2, "how are you", "fine")
    context = build_context(history, "bye", context_window=10_000).messages
    assert [(m.role, m.content) for m in context] == [
        ("user", "hi"), ("assistant", "hello"),
        ("user", "how are you"), ("assistant", "fine"),
        ("user", "bye"),
    ]  # fmt: skip


def test_image_turns_are_described_in_text() -> None:
    history = turn(1, "draw a cat", "", files=["f1", "f2"])
    context = build_context(history, "nice", context_window=10_000).messages
    assert context[1].content == "[image: draw a cat] [image: draw a cat]"


def test_a_failed_turn_contributes_only_its_question() -> None:
    context = build_context(turn(1, "q", None), "next", context_window=10_000).messages
    assert [m.role for m in context] == ["user", "user"]


def test_oldest_whole_turns_are_dropped_to_fit_the_window() -> None:
    long = "x" * 400  # ~100 tokens
    history = [m for n in range(1, 11) for m in turn(n, f"{n} {long}", f"answer {n} {long}")]
    context = build_context(history, "now", context_window=1_000).messages
    used = sum(estimate_tokens(m.content) for m in context)
    assert used <= 750  # a quarter of the window is kept for the reply
    kept_turns = [m.content.split()[0] for m in context[:-1] if m.role == "user"]
    assert kept_turns == ["8", "9", "10"]  # the newest turns survive
    assert build_context(history, "now", context_window=1_000).dropped_through == 7
    assert context[0].role == "user"  # never an answer without its question


def test_the_prompt_is_sent_even_when_it_alone_is_too_long() -> None:
    context = build_context(turn(1, "a", "b"), "y" * 10_000, context_window=100).messages
    assert [m.content for m in context] == ["y" * 10_000]


def test_a_summary_comes_first_and_takes_its_share_of_the_window() -> None:
    long = "x" * 400
    history = [m for n in range(1, 11) for m in turn(n, f"{n} {long}", f"answer {n} {long}")]
    fitted = build_context(history, "now", context_window=1_000, summary="s" * 400)
    assert fitted.messages[0].role == "system"
    assert fitted.messages[0].content.endswith("s" * 400)
    kept_turns = [m.content.split()[0] for m in fitted.messages[1:-1] if m.role == "user"]
    assert kept_turns == ["9", "10"]  # one turn fewer: the summary's tokens count too
    assert fitted.dropped_through == 8
