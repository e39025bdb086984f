"""The OpenAI-compatible surface, at /openai: the official SDK works against it unchanged."""

from aitasks.api.openai.factory import create_openai_app, serve_chat_first

__all__ = ["create_openai_app", "serve_chat_first"]
