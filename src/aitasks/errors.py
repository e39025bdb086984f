"""One exception hierarchy for the whole service.

Domain code raises these anywhere; the gateway maps each to its HTTP status and JSON error shape in
one place (`api/errors.py`). Each class pins its status and error type; callers never choose them.
"""

from __future__ import annotations

from typing import Any


class AITasksError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details


class InvalidRequest(AITasksError):
    status_code = 400
    error_type = "invalid_request"


class UnknownModel(InvalidRequest):
    error_type = "unknown_model"

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model {model!r}; known models: {', '.join(known)}",
            param="model",
            known_models=known,
        )


class WrongModelKind(InvalidRequest):
    error_type = "wrong_model_kind"


class PayloadTooLarge(AITasksError):
    status_code = 413
    error_type = "payload_too_large"


class NotFound(AITasksError):
    status_code = 404
    error_type = "not_found"


class TaskNotFound(NotFound):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found", param="task_id")


class ConversationNotFound(NotFound):
    def __init__(self, conversation_id: str, *, param: str = "conversation_id") -> None:
        super().__init__(f"conversation {conversation_id!r} not found", param=param)


class FileNotFound(NotFound):
    def __init__(self, file_id: str) -> None:
        super().__init__(f"file {file_id!r} not found", param="file_id")


class ServiceUnavailable(AITasksError):
    status_code = 503
    error_type = "service_unavailable"


class ConfigError(AITasksError):
    """The operator's configuration is wrong; raised at start-up, never during a request."""


class ProviderError(AITasksError):
    """A model provider failed. `retryable` says whether another attempt may succeed."""

    status_code = 502
    error_type = "provider_error"
    retryable = False


class ProviderTimeout(ProviderError):
    error_type = "provider_timeout"
    retryable = True
