"""The gateway's app factory.

`create_app()` builds the gateway alone (`aitasks api`); `create_app(embedded=True)` also runs a
worker and an in-process queue inside it (`aitasks up`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.routing import Mount

from aitasks import __version__, telemetry
from aitasks.api.auth import KeyCache
from aitasks.api.body_limit import BodySizeLimit
from aitasks.api.error_handlers import install_error_handlers
from aitasks.api.front_door import open_front_door
from aitasks.api.openai import create_openai_app, serve_chat_first
from aitasks.api.poll import serve_polls_first
from aitasks.api.routes import (
    batches,
    catalogue,
    conversations,
    files,
    health,
    metrics,
    ops,
    status,
    submit,
    tasks,
    uploads,
    web,
    webhooks,
)
from aitasks.api.submit_route import serve_submits_first
from aitasks.config import Settings
from aitasks.errors import ConfigError
from aitasks.ops import Sampler, open_series
from aitasks.services import Services
from aitasks.store.migrate import schema_state
from aitasks.worker import Worker

log = logging.getLogger(__name__)

# Requests that make no span: probes, scrapes, static files, the operations page and its reads
# (a page left open would fill the traces with its refreshes).
UNTRACED_PREFIXES = ("/healthz", "/readyz", "/metrics", "/static/", "/ops", "/v1/ops", "/v1/status")


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """Whether FastAPI's own request span is skipped for this request (`UNTRACED_PREFIXES`)."""
    path = str(scope.get("path", ""))
    return path.startswith(UNTRACED_PREFIXES)


def warn_mock_fallbacks(services: Services) -> None:
    for spec in services.models.mock_fallbacks():
        needs = services.models.needs(spec)
        log.warning("model %s is served by the mock (needs %s)", spec.name, needs)


def create_app(
    settings: Settings | None = None,
    *,
    embedded: bool = False,
    in_process_queue: bool | None = None,
) -> FastAPI:
    settings = settings or Settings()
    telemetry.configure("aitasks" if embedded else "aitasks-gateway", version=__version__)
    use_memory_queue = embedded and not settings.redis_configured
    if in_process_queue is not None:
        use_memory_queue = in_process_queue

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings, in_process_queue=use_memory_queue)
        app.state.services = openai_app.state.services = services
        series = app.state.ops_series = open_series(
            settings, services.db, in_process=use_memory_queue
        )
        stop = asyncio.Event()
        worker_task: asyncio.Task[None] | None = None
        sampler_task: asyncio.Task[None] | None = None
        try:
            state = await schema_state(services.db)
            if not state.up_to_date:
                raise ConfigError(
                    f"the database schema is at {state.current}, this code needs {state.head}: "
                    "run `aitasks db upgrade`"
                )
            await services.load_secrets()
            await services.warm()
            warn_mock_fallbacks(services)
            if embedded:
                worker = Worker(services, concurrency=settings.worker_concurrency)
                if use_memory_queue:
                    # What the in-process queue held died with the last process: all of it again.
                    await worker.reconciler.reconcile_once(pending_grace=0)
                worker_task = asyncio.create_task(worker.run(stop))
            sampler_task = asyncio.create_task(Sampler(services, series).run(stop))
            yield
        finally:
            stop.set()
            if worker_task is not None:
                await worker_task
            if sampler_task is not None:
                await sampler_task
            await series.close()
            await services.close()
            telemetry.flush()

    app = FastAPIOffline(
        title="aitasks",
        version=__version__,
        summary="Asynchronous AI tasks: submit chat and image requests, poll for results.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry request spans (FastAPI 0.142+; when tracing is on), which
        # honour an incoming `traceparent`: one span a request, not one per dependency.
        telemetry={"operation_spans": False, "exclude": untraced},
    )
    install_error_handlers(app)
    routes = (
        submit,
        tasks,
        batches,
        conversations,
        catalogue,
        files,
        uploads,
        webhooks,
        health,
        metrics,
        status,
        web,
        ops,
    )
    app.include_router(ops.page_router)
    for module in routes:
        app.include_router(module.router)
    submits = serve_submits_first(app)
    poll = serve_polls_first(app, tasks.router.prefix + tasks.READ_PATH)  # the most frequent, first
    app.mount("/static", StaticFiles(directory=web.WEB), name="static")
    openai_app = create_openai_app()
    openai_chat = serve_chat_first(openai_app)
    openai = Mount("/openai", app=openai_app)  # what `app.mount` makes, kept for the front door
    app.router.routes.append(openai)
    # Keys looked up lately, shared by both apps.
    app.state.key_cache = openai_app.state.key_cache = KeyCache(settings.key_cache_seconds)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_image_bytes,
        batch_bytes=settings.max_batch_bytes,
    )
    open_front_door(app, [poll, *submits], mounted=[(openai, [openai_chat])])
    return app
