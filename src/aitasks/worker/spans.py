"""The worker's spans, in the trace of the task's submit (see `aitasks.telemetry`).

- `delivery`: a queue entry processed (a consumer span, the entry's `traceparent` its parent):
  the claim (`claim`), the run, the acknowledgement. An entry published without one (by the
  reconciler, a retry, a batch, or as a conversation's next turn) has no such span; the run then
  joins the trace stored with the task (or, a batch's task, starts one linked to the batch).
- `run`: what one claim of the task did: each attempt, fallbacks, the result write.
- `attempt`: one try of one model, the wait for a concurrency slot included.
- `rate_slot`: the wait for a slot in the model's shared `rpm` budget.
- `model_call`: the provider call, in the GenAI semantic conventions (`gen_ai.*`): operation,
  provider, request and response model, tokens, finish reason, and the first token as an event.
  Prompt and reply text only with `AITASKS_TRACE_CONTENT=1`.

Each function is cheap when tracing is off: it returns the shared do-nothing scope.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Final, TypeVar

from aitasks import telemetry
from aitasks.providers import ChatRequest, ImageRequest
from aitasks.providers.base import ChatMessage, Usage
from aitasks.queue import Delivery
from aitasks.routing import ModelKind, ModelSpec
from aitasks.worker.context import estimate_tokens
from aitasks.worker.run import TaskRun

# What a provider's stream yields: reply text, the usage, and whatever else it may carry.
Piece = TypeVar("Piece")

# Our provider names as the GenAI conventions spell them (`gen_ai.provider.name`), where they
# have one; others keep ours.
PROVIDER_NAMES: Final = {"openai": "openai", "gemini": "gcp.gemini", "anthropic": "anthropic"}
# Request parameters recorded as `gen_ai.request.*` (ours -> theirs).
REQUEST_PARAMS: Final = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
}


def delivery(entry: Delivery) -> telemetry.SpanScope:
    """The span of processing a queue entry, when the entry carries its task's trace."""
    if not entry.trace or not telemetry.enabled():
        return telemetry.NOTHING
    return telemetry.span(
        f"process {entry.queue}",
        {
            "messaging.system": "aitasks",
            "messaging.operation.type": "process",
            "messaging.destination.name": entry.queue,
            "messaging.message.id": entry.message_id,
            "aitasks.task_id": entry.task_id,
        },
        kind="consumer",
        parent=entry.trace,
    )


def claim(entry: Delivery) -> telemetry.SpanScope:
    """The span of claiming the entry's task, inside the entry's own span (an entry without a
    trace has none, and its claim is not a trace of its own)."""
    if not entry.trace or not telemetry.enabled():
        return telemetry.NOTHING
    return telemetry.span("aitasks.claim")


def run(task_run: TaskRun, worker_id: str) -> telemetry.SpanScope:
    """The span of one claim's run: the delivery's child, or (an entry without a trace) the
    child of the context stored with the task; a batch's task starts a trace of its own, linked
    to the batch's request (`telemetry.as_link`)."""
    if not telemetry.enabled():
        return telemetry.NOTHING
    task = task_run.task
    parent, links = telemetry.parent_and_links(task.trace_context)
    return telemetry.span(
        "aitasks.run",
        {
            "aitasks.task_id": task.id,
            "aitasks.conversation_id": task.conversation_id,
            "aitasks.kind": task.kind,
            "aitasks.model": task.model,
            "aitasks.queue": task.queue,
            "aitasks.attempt": task.attempts,
            "aitasks.worker_id": worker_id,
        },
        parent=None if task_run.delivery.trace else parent,
        links=links,
    )


def attempt(task_run: TaskRun, spec: ModelSpec) -> telemetry.SpanScope:
    """The span of one attempt at one model."""
    if not telemetry.enabled():
        return telemetry.NOTHING
    return telemetry.span(
        "aitasks.attempt",
        {"aitasks.attempt": task_run.task.attempts, "aitasks.model": spec.name},
    )


def rate_slot(spec: ModelSpec) -> telemetry.SpanScope:
    """The span of waiting for a slot in the model's `rpm` budget."""
    return telemetry.span(
        "aitasks.rate_slot", {"aitasks.model": spec.name, "aitasks.rpm": spec.rpm}
    )


def model_call(request: ChatRequest | ImageRequest) -> ModelCall:
    """The provider call's GenAI span: `async with model_call(request) as call:`, then iterate
    the provider's stream through `call.stream(...)`."""
    if not telemetry.enabled():
        return NO_CALL
    return TracedCall(request)


def _messages(messages: Sequence[ChatMessage]) -> str:
    """Messages as the conventions' `gen_ai.input.messages` JSON."""
    return json.dumps(
        [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in messages],
        ensure_ascii=False,
    )


class ModelCall:
    """A provider call that is not traced: everything passes straight through."""

    async def __aenter__(self) -> ModelCall:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def stream(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[Piece]:
        """The provider's stream, as it is."""
        return pieces

    def images(self, count: int) -> None:
        """The provider made `count` images."""
        return None


NO_CALL: Final = ModelCall()


class TracedCall(ModelCall):
    """A provider call inside its GenAI span."""

    def __init__(self, request: ChatRequest | ImageRequest) -> None:
        self.request = request
        spec = request.model
        chat = isinstance(request, ChatRequest)
        self.operation = "chat" if chat else "generate_content"
        self.model = spec.upstream_model or spec.name
        attributes: dict[str, telemetry.AttributeValue | None] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": PROVIDER_NAMES.get(spec.served_by, spec.served_by),
            "gen_ai.request.model": self.model,
            "gen_ai.output.type": "text" if spec.kind is ModelKind.CHAT else "image",
            "aitasks.model": spec.name,
            "aitasks.attempt": request.attempt,
        }
        for ours, theirs in REQUEST_PARAMS.items():
            value = request.params.get(ours)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[theirs] = value
        if isinstance(request, ImageRequest):
            attributes["gen_ai.request.choice.count"] = request.n
        self._scope = telemetry.span(f"{self.operation} {self.model}", attributes, kind="client")
        self.span: telemetry.Span = telemetry.NOTHING

    async def __aenter__(self) -> TracedCall:
        self.span = self._scope.__enter__()
        if telemetry.content_enabled():
            if isinstance(self.request, ChatRequest):
                self.span.set("gen_ai.input.messages", _messages(self.request.messages))
            else:
                self.span.set(
                    "gen_ai.input.messages", _messages([ChatMessage("user", self.request.prompt)])
                )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._scope.__exit__(*exc_info)

    async def stream(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[Piece]:
        """The provider's stream, watched: the first piece's time, the text, the usage."""
        started = time.monotonic()
        first = True
        text: list[str] = []
        usage: Usage | None = None
        async for piece in pieces:
            if first:
                first = False
                self.span.event(
                    "gen_ai.first_token",
                    {"gen_ai.response.time_to_first_chunk": time.monotonic() - started},
                )
            if isinstance(piece, Usage):
                usage = piece
            elif isinstance(piece, str):
                text.append(piece)
            yield piece
        self._replied("".join(text), usage)

    def _replied(self, text: str, usage: Usage | None) -> None:
        """The stream ended: its finish reason, the response model and the tokens (as the
        provider counted them, else estimated as the task's usage is)."""
        assert isinstance(self.request, ChatRequest)
        estimated = usage is None
        if usage is None:
            usage = Usage(
                prompt_tokens=sum(estimate_tokens(m.content) for m in self.request.messages),
                completion_tokens=(len(text) + 3) // 4,
            )
        self.span.update(
            {
                "gen_ai.response.model": self.model,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "aitasks.usage.estimated": estimated,
            }
        )
        if telemetry.content_enabled():
            reply = [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
            self.span.set("gen_ai.output.messages", json.dumps(reply, ensure_ascii=False))

    def images(self, count: int) -> None:
        self.span.update(
            {
                "gen_ai.response.model": self.model,
                "gen_ai.response.finish_reasons": ["stop"],
                "aitasks.images": count,
            }
        )
