"""What a task is expected to cost in tokens, reserved against its key's daily quota when it is
admitted and settled with the real usage when it ends.

Parallel submits each see the quota as it is before any of them has run, so a quota checked only
against finished tasks' usage can be overshot by any number of them at once. Reserving an estimate
at admission bounds the overshoot: once the reservations reach the quota the key is refused, and
what a task uses past its estimate is at most its reply beyond the bound below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Per-message overhead of the chat format, in tokens (as the worker counts it).
MESSAGE_OVERHEAD_TOKENS = 4
# What a reply is expected to cost when the request names no bound of its own (`max_tokens`):
# about 750 words. A longer reply is settled at its real size when the task ends.
REPLY_ESTIMATE_TOKENS = 1000


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters a token, as for English with BPE. The
    same rule as the worker's (`worker.context.estimate_tokens`), which usage falls back to."""
    return MESSAGE_OVERHEAD_TOKENS + (len(text) + 3) // 4


def chat_estimate(
    prompt: str,
    context: Sequence[Mapping[str, str]] | None = None,
    params: Mapping[str, object] | None = None,
) -> int:
    """The tokens a chat task is reserved: its prompt and the messages sent with it, estimated
    as the worker counts them, plus its reply, bounded by `max_tokens` when the request gives
    one (a smaller bound reserves less; a larger one is capped by the default estimate)."""
    sent = estimate_tokens(prompt) + sum(
        estimate_tokens(m.get("content", "")) for m in context or ()
    )
    bound = (params or {}).get("max_tokens")
    reply = REPLY_ESTIMATE_TOKENS
    if isinstance(bound, int) and not isinstance(bound, bool) and bound >= 0:
        reply = min(bound, REPLY_ESTIMATE_TOKENS)
    return sent + reply
