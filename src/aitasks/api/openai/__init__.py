"""The OpenAI-compatible surface, at /openai: the official SDK works against it unchanged."""

from aitasks.api.openai.app import create_openai_app

__all__ = ["create_openai_app"]
