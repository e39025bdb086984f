"""Settings from the environment or a `.env` file.

Two spellings are accepted for the backing services: URL-style (`DATABASE_URL`, `REDIS_URL`) and
the seed's separate variables (`DB_HOST`, `DB_PORT`, `POSTGRES_*`, `REDIS_HOST`, `REDIS_PORT`).
A URL wins over the separate variables when both are set.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aitasks.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def async_database_url(url: str) -> str:
    """Give a plain database URL the async driver SQLAlchemy needs (`postgresql://` → asyncpg)."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def is_loopback(host: str) -> bool:
    """Whether `host` is provably reachable from this machine alone: a loopback IP address
    (`127.0.0.0/8`, `::1`) or exactly `localhost`. A name is never judged by its spelling
    (`127.attacker.example` resolves wherever its owner likes), and `0.0.0.0` is every address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every setting of the service; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- storage -------------------------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    db_host: str | None = Field(default=None, validation_alias="DB_HOST")
    db_port: int = Field(default=5432, validation_alias="DB_PORT")
    postgres_db: str = Field(default="aitasks", validation_alias="POSTGRES_DB")
    postgres_user: str = Field(default="postgres", validation_alias="POSTGRES_USER")
    postgres_password: str = Field(default="", validation_alias="POSTGRES_PASSWORD")
    data_dir: Path = Field(default=Path(".aitasks"), validation_alias="AITASKS_DATA_DIR")
    db_pool_size: int = Field(default=20, gt=0, validation_alias="AITASKS_DB_POOL_SIZE")
    # Where files' bytes live: `local` (AITASKS_DATA_DIR/files), `postgres` (in the database) or
    # `s3://bucket/prefix`; unset, `postgres` on PostgreSQL and `local` on SQLite.
    file_store: str | None = Field(default=None, validation_alias="AITASKS_FILE_STORE")
    # What file links point at: the gateway (`/v1/files/{id}`), or the store's pre-signed URLs.
    file_links: str = Field(
        default="gateway", pattern="^(gateway|store)$", validation_alias="AITASKS_FILE_LINKS"
    )

    # --- retention: days, or off (kept until deleted) -----------------------------------------
    task_retention_days: int | None = Field(
        default=30, validation_alias="AITASKS_TASK_RETENTION_DAYS"
    )
    file_retention_days: int | None = Field(
        default=None, validation_alias="AITASKS_FILE_RETENTION_DAYS"
    )
    webhook_retention_days: int | None = Field(
        default=7, validation_alias="AITASKS_WEBHOOK_RETENTION_DAYS"
    )
    conversation_retention_days: int | None = Field(
        default=None, validation_alias="AITASKS_CONVERSATION_RETENTION_DAYS"
    )

    # --- queue ---------------------------------------------------------------------------------
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    redis_host: str | None = Field(default=None, validation_alias="REDIS_HOST")
    redis_port: int = Field(default=6379, validation_alias="REDIS_PORT")
    redis_prefix: str = Field(default="aitasks", validation_alias="AITASKS_REDIS_PREFIX")
    # How a queue hands out its tasks: by lane and per-tenant fair share (`aitasks.priority`), or
    # first in, first out for everyone (for comparison: benchmarks/fairness.py). Every gateway
    # and worker of a deployment must say the same.
    queue_order: Literal["fair", "fifo"] = Field(
        default="fair", validation_alias="AITASKS_QUEUE_ORDER"
    )

    # --- models --------------------------------------------------------------------------------
    models_file: Path | None = Field(default=None, validation_alias="AITASKS_MODELS")
    mock_latency_ms: int = Field(default=50, ge=0, validation_alias="AITASKS_MOCK_LATENCY_MS")
    strict_models: bool = Field(default=False, validation_alias="AITASKS_STRICT_MODELS")
    mock_fail_rate: float = Field(
        default=0.0, ge=0, le=1, validation_alias="AITASKS_MOCK_FAIL_RATE"
    )

    # --- limits and timing ---------------------------------------------------------------------
    max_prompt_chars: int = Field(default=32_000, gt=0, validation_alias="AITASKS_MAX_PROMPT_CHARS")
    # Tasks in flight per worker process. Their claims, finishes, events and acks go out in
    # shared flushes (`worker/flushes.py`), so more slots make fuller flushes: 32 took about 40%
    # less of the worker's CPU per task than 8 in benchmarks.e2e at client concurrency 20 and 50.
    worker_concurrency: int = Field(default=32, gt=0, validation_alias="AITASKS_WORKER_CONCURRENCY")
    # Slots of each worker that batch work leaves free, so interactive and default work never
    # waits for a slot behind a batch; unset: a quarter of the worker's concurrency (0: none).
    batch_headroom: int | None = Field(
        default=None, ge=0, validation_alias="AITASKS_BATCH_HEADROOM"
    )
    max_queue_depth: int = Field(default=10_000, gt=0, validation_alias="AITASKS_MAX_QUEUE_DEPTH")
    lease_seconds: float = Field(default=15.0, gt=0, validation_alias="AITASKS_LEASE_SECONDS")
    reconcile_seconds: float = Field(
        default=5.0, gt=0, validation_alias="AITASKS_RECONCILE_SECONDS"
    )
    retry_base_seconds: float = Field(
        default=1.0, ge=0, validation_alias="AITASKS_RETRY_BASE_SECONDS"
    )
    retry_max_seconds: float = Field(
        default=60.0, ge=0, validation_alias="AITASKS_RETRY_MAX_SECONDS"
    )
    max_wait_seconds: float = Field(default=60.0, gt=0, validation_alias="AITASKS_MAX_WAIT_SECONDS")
    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, validation_alias="AITASKS_SSE_HEARTBEAT_SECONDS"
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, validation_alias="AITASKS_SHUTDOWN_GRACE_SECONDS"
    )
    # How often the figures the operations page charts are sampled (by one gateway at a time).
    ops_sample_seconds: float = Field(
        default=10.0, gt=0, validation_alias="AITASKS_OPS_SAMPLE_SECONDS"
    )
    log_format: str = Field(
        default="auto", pattern="^(auto|json|text)$", validation_alias="AITASKS_LOG_FORMAT"
    )
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("AITASKS_LOG_LEVEL", "LOG_LEVEL")
    )

    # --- tenants and input limits --------------------------------------------------------------
    # On: every API call but health needs `Authorization: Bearer <key>`. Unset: on, wherever the
    # app is built (plain `uvicorn`/`gunicorn` too), except that the CLI turns it off when it
    # binds a loopback address (see `auth_for_host`). Off only when the operator says so.
    auth: bool | None = Field(default=None, validation_alias="AITASKS_AUTH")
    # How long a gateway trusts a key it looked up: a revoked key works for at most this long.
    key_cache_seconds: float = Field(
        default=10.0, ge=0, validation_alias="AITASKS_KEY_CACHE_SECONDS"
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, validation_alias="AITASKS_MAX_BODY_BYTES")
    max_messages: int = Field(default=500, gt=0, validation_alias="AITASKS_MAX_MESSAGES")
    max_history_chars: int = Field(
        default=400_000, gt=0, validation_alias="AITASKS_MAX_HISTORY_CHARS"
    )
    max_turns: int = Field(default=10_000, gt=0, validation_alias="AITASKS_MAX_TURNS")
    max_images: int = Field(default=4, gt=0, validation_alias="AITASKS_MAX_IMAGES")
    max_image_side: int = Field(default=2048, gt=0, validation_alias="AITASKS_MAX_IMAGE_SIDE")
    # Images sent in (a chat turn's, an upload's): the bytes of one, and how many one request holds.
    max_image_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, validation_alias="AITASKS_MAX_IMAGE_BYTES"
    )
    max_input_images: int = Field(default=16, gt=0, validation_alias="AITASKS_MAX_INPUT_IMAGES")
    # Batches: the requests one may hold, and the bytes of its body or input file (a batch's
    # JSON on the seed API, a JSONL upload on the OpenAI one).
    max_batch_requests: int = Field(
        default=50_000, gt=0, validation_alias="AITASKS_MAX_BATCH_REQUESTS"
    )
    max_batch_bytes: int = Field(
        default=100 * 1024 * 1024, gt=0, validation_alias="AITASKS_MAX_BATCH_BYTES"
    )
    file_url_ttl_seconds: int = Field(
        default=3600, gt=0, validation_alias="AITASKS_FILE_URL_TTL_SECONDS"
    )
    webhook_allow_private: bool = Field(
        default=False, validation_alias="AITASKS_WEBHOOK_ALLOW_PRIVATE"
    )
    webhook_max_attempts: int = Field(
        default=8, gt=0, validation_alias="AITASKS_WEBHOOK_MAX_ATTEMPTS"
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="AITASKS_WEBHOOK_TIMEOUT_SECONDS"
    )
    # The first retry's delay; each one after waits twice as long (up to an hour).
    webhook_retry_base_seconds: float = Field(
        default=5.0, gt=0, validation_alias="AITASKS_WEBHOOK_RETRY_BASE_SECONDS"
    )
    # Where clients reach the gateway: the base of file links in webhooks (no request to go by).
    public_url: str = Field(default="http://127.0.0.1:8000", validation_alias="AITASKS_PUBLIC_URL")

    @classmethod
    def load(cls) -> Settings:
        """The settings from the environment and `.env`; a bad value is a `ConfigError` of one
        line naming its variable, not pydantic's report."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from None

    @field_validator(
        "task_retention_days",
        "file_retention_days",
        "webhook_retention_days",
        "conversation_retention_days",
        mode="before",
    )
    @classmethod
    def _days_or_off(cls, value: object) -> object:
        """`off` (or empty) keeps data until it is deleted; a number of days must be at least 1,
        since 0 would purge what was just made."""
        if isinstance(value, str) and value.strip().lower() in ("", "off", "never", "none"):
            return None
        if value is not None and int(str(value)) < 1:
            raise ValueError("must be a whole number of days, at least 1, or off")
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether callers need a key: yes unless `AITASKS_AUTH=off` or `auth_for_host` turned it
        off. Unset means on, so an app built without the CLI (which knows nothing of the address
        it is served on) never runs open."""
        return self.auth is not False

    def auth_for_host(self, host: str) -> Settings:
        """These settings with `auth` decided for a gateway listening on `host`: as set, else on
        unless only this machine can reach it."""
        if self.auth is not None:
            return self
        return self.model_copy(update={"auth": not is_loopback(host)})

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: `DATABASE_URL`, else the seed's variables, else SQLite."""
        if self.database_url:
            return async_database_url(self.database_url)
        if self.db_host:
            user = quote(self.postgres_user, safe="")
            password = (
                f":{quote(self.postgres_password, safe='')}" if self.postgres_password else ""
            )
            return (
                f"postgresql+asyncpg://{user}{password}@{self.db_host}:{self.db_port}"
                f"/{self.postgres_db}"
            )
        return f"sqlite+aiosqlite:///{(self.data_dir / 'aitasks.db').resolve()}"

    @property
    def redis_configured(self) -> bool:
        """Whether the operator named a Redis server (the embedded default runs without one)."""
        return bool(self.redis_url or self.redis_host)

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            return f"redis://{self.redis_host}:{self.redis_port}/0"
        return DEFAULT_REDIS_URL

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
