"""One exception hierarchy for the whole service.

Our exception hierarchy (HTTP status in brackets):

* AITasksError [500]
  + InvalidRequest [400]
  | + UnknownModel [400]
  | + WrongModelKind [400]
  | + UnsupportedFeature [400] - the model cannot serve what the request asks (tools, images)
  | + ValueRefused [400] - the database refused a value of the request (SQLSTATE class 22)
  | + webhooks.targets.RefusedTarget [400]
  + Unauthorized [401]
  + NotFound [404]
  | + TaskNotFound
  | + ConversationNotFound
  | + FileNotFound
  | + BatchNotFound
  + Conflict [409]
  + PayloadTooLarge [413]
  + UnsupportedMediaType [415]
  + LimitExceeded [422]
  + IdempotencyKeyReused [422]
  + InvalidBatch [422] - lines of a batch are bad (`errors` names each); nothing was queued
  + QueueFull [429]
  + RateLimited [429]
  + ServiceUnavailable [503] - answered with `Retry-After`
  | + RedisUnavailable - raised only by `redis_connect.redis_boundary()`
  | + DatabaseUnavailable - raised only by `store.database.database_boundary()` /
  |                         `store.database.translated()`
  | + FileStoreUnavailable - the file store (a folder, S3) cannot take or give bytes now
  + ConfigError [500] - at start-up, never during a request
  + worker.calls.ModelGone [500] - a task's model left the table before it ran (the task fails)
  + ProviderError [502] - `retryable` says whether another attempt may succeed
    + ProviderBadRequest (not retryable)
    + ProviderTimeout (retryable)
    + ProviderConnectionError (retryable)
    + ProviderRateLimited (retryable)
    + ProviderUnavailable (not retryable: the model's circuit breaker is open)
    + ProviderServerError (retryable)
    + InvalidModelOutput (retryable: the reply did not match the structured output asked for)

Domain code raises these anywhere; each HTTP surface maps them to its status and JSON error shape
in one place (`api/error_handlers.py` for the seed's API, `api/openai/error_shape.py` for OpenAI's).
Each class pins its status and error type; callers never choose them. The two backing services
each have one boundary where their drivers' outages become a type here (`RedisUnavailable`,
`DatabaseUnavailable`), so callers catch a type and never test a driver's error with a predicate.
"""

from __future__ import annotations

from typing import Any


class AITasksError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        # Seconds the client should wait before trying again (sent as `Retry-After`).
        self.retry_after = retry_after
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


class UnsupportedFeature(InvalidRequest):
    """The model asked for cannot serve a feature the request uses; the message names both."""

    error_type = "unsupported_feature"


class ValueRefused(InvalidRequest):
    """The database refused a value of the request (a NUL character in text, a date out of
    range): the request's fault, not the server's. Made from the driver's error by
    `store.database.translated`."""

    def __init__(self) -> None:
        super().__init__("a value in the request cannot be stored")


class PayloadTooLarge(AITasksError):
    status_code = 413
    error_type = "payload_too_large"


class UnsupportedMediaType(AITasksError):
    """Bytes sent as an image that are not one (of the kinds models read)."""

    status_code = 415
    error_type = "unsupported_media_type"


class LimitExceeded(AITasksError):
    """A request over one of the operator's input limits (image count, turns in a conversation)."""

    status_code = 422
    error_type = "limit_exceeded"


class Unauthorized(AITasksError):
    """No API key, or one that is unknown or revoked. Says nothing about which."""

    status_code = 401
    error_type = "unauthorized"


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


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} not found", param="batch_id")


class InvalidBatch(AITasksError):
    """Some lines of a batch are bad: the batch is `failed`, with each bad line's number and
    reason in `errors`, and none of it was queued."""

    status_code = 422
    error_type = "invalid_batch"


class Conflict(AITasksError):
    """The request does not fit the resource's current state (cancelling a finished task)."""

    status_code = 409
    error_type = "conflict"


class IdempotencyKeyReused(AITasksError):
    status_code = 422
    error_type = "idempotency_key_reused"


class QueueFull(AITasksError):
    status_code = 429
    error_type = "queue_full"


class RateLimited(AITasksError):
    """An API key over one of its limits: requests per minute, tasks in flight, tokens per day.
    The message names the limit; `retry_after` says when the key may go on."""

    status_code = 429
    error_type = "rate_limited"


class ServiceUnavailable(AITasksError):
    """A service the request needs cannot be reached now; trying again later may succeed."""

    status_code = 503
    error_type = "service_unavailable"


class RedisUnavailable(ServiceUnavailable):
    """Redis (queues, event logs, limits) cannot be reached. Raised by the one Redis boundary,
    `redis_connect.redis_boundary()`."""


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached, or cannot take writes just now (restarting, read-only).
    Raised by the one database boundary in `store/database.py`."""


class FileStoreUnavailable(ServiceUnavailable):
    """The file store cannot be reached, or refused a write (a folder on a full disk, an object
    store that is down). Raised by the backends in `files/`; a file simply missing is not this
    (it answers 404)."""


class ConfigError(AITasksError):
    """The operator's configuration is wrong; raised at start-up, never during a request."""


class ProviderError(AITasksError):
    """A model provider failed. `retryable` says whether another attempt may succeed; each
    subclass pins it, so no caller decides it with an `if` ladder."""

    status_code = 502
    error_type = "provider_error"
    retryable = False


class ProviderBadRequest(ProviderError):
    """The provider refused the request itself (a 4xx): trying again cannot help."""

    error_type = "provider_bad_request"


class ProviderTimeout(ProviderError):
    error_type = "provider_timeout"
    retryable = True


class ProviderConnectionError(ProviderError):
    error_type = "provider_connection_error"
    retryable = True


class ProviderRateLimited(ProviderError):
    """A 429 from the provider; `retry_after` is its `Retry-After`, when it sent one."""

    error_type = "provider_rate_limited"
    retryable = True


class ProviderUnavailable(ProviderError):
    """The model's circuit breaker is open: it failed too often just now. Not retried in place;
    the task falls back to another model, or fails."""

    error_type = "provider_unavailable"


class ProviderServerError(ProviderError):
    """A 5xx from the provider."""

    error_type = "provider_server_error"
    retryable = True


class InvalidModelOutput(ProviderError):
    """The reply is not the JSON the request's `response_format` asked for: this attempt
    failed, and another may do better."""

    error_type = "invalid_output"
    retryable = True
