"""The OpenAI-compatible app, mounted by the gateway at /openai (so the SDK's base URL is
`http://HOST:PORT/openai/v1`). It shares the gateway's services and has its own error shape."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from aitasks.api.openai import batches, conversations, files, responses
from aitasks.api.openai.error_shape import install_openai_error_handlers
from aitasks.api.openai.routes import CHAT_PATH, answer_chat, router
from aitasks.api.openai.wire import ChatCompletionRequest
from aitasks.api.submit_route import SubmitRoute, serve_first


def create_openai_app() -> FastAPI:
    app = FastAPIOffline(
        title="aitasks: OpenAI-compatible API",
        summary="For the official OpenAI SDKs: base_url=http://HOST:PORT/openai/v1",
    )
    install_openai_error_handlers(app)
    app.include_router(router)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(responses.router)
    app.include_router(conversations.router)
    return app


def serve_chat_first(app: FastAPI) -> SubmitRoute:
    """Put the chat completions' plain route (`api/submit_route.py`) ahead of every other route of
    `app` (made by `create_openai_app`); returns it."""
    chat = SubmitRoute(router.prefix + CHAT_PATH, "openai_chat", ChatCompletionRequest,
                       answer_chat, router=app.router)  # fmt: skip
    return serve_first(app, [chat])[0]
