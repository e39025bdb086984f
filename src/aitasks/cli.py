"""The `aitasks` command: a thin shell that reads settings and calls one function of the library."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import prometheus_client
import typer
import uvicorn
from rich.console import Console
from rich.live import Live
from starlette.types import ASGIApp

from aitasks import logs
from aitasks.cli_help import BatchId, Command, ExpiresAfter, Group, KeyWeight, MaxPriority
from aitasks.client import DEFAULT_URL, Client, ClientError, ReplyLine
from aitasks.config import Settings
from aitasks.errors import AITasksError, ConfigError, DatabaseUnavailable
from aitasks.files import check_file_store
from aitasks.lifecycle.retention import purge_now
from aitasks.services import Services
from aitasks.status_view import follow_batch, status_view
from aitasks.store import api_keys as store_keys
from aitasks.store.database import Database, database_boundary
from aitasks.store.migrate import schema_state, upgrade
from aitasks.store.models import ApiKey as ApiKeyRow
from aitasks.warm_freeze import FreezingApp
from aitasks.worker import Worker
from aitasks.worker.retrying import retry_database

T = TypeVar("T")


app = typer.Typer(help="aitasks: an asynchronous AI task service.", no_args_is_help=True, cls=Group)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True, cls=Group)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(
    help="API keys: each acts for a tenant, with its own limits.", no_args_is_help=True, cls=Group
)
app.add_typer(keys_app, name="keys")
# Help texts are Rich markup: a literal `[` is written `\[`, else `[default: …]` vanishes.
DEFAULT_CONCURRENCY = Settings.model_fields["worker_concurrency"].default

Host = Annotated[
    str, typer.Option(help="Address to listen on; off loopback, auth is on by default.")
]
Port = Annotated[int, typer.Option(help="Port to listen on.")]


def _settings(*, serving: bool = False) -> Settings:
    """The settings; for a service, with its file store known to work (else one line)."""
    settings = Settings.load()
    logs.configure(settings.log_level, settings.log_format)
    if serving:
        _on_database(settings, lambda db: check_file_store(settings, db))
    return settings


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived service on uvloop (a faster event loop: libuv, as Node's) when it is
    installed, as it is with uvicorn[standard]; else on asyncio's own."""
    # What is loaded by now (modules, the app) lives as long as the process: frozen out of the
    # collector's sight, so a full collection stops walking it on every pass.
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


async def _serve(app_: ASGIApp, host: str, port: int, settings: Settings) -> None:
    config = uvicorn.Config(
        FreezingApp(app_),
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level.lower(),
        # Off where the level would drop its lines anyway: uvicorn builds each request's line
        # (client address, path) before the level is looked at.
        access_log=logging.getLogger().isEnabledFor(logging.INFO),
        timeout_graceful_shutdown=10,
    )
    await uvicorn.Server(config).serve()


@app.command(cls=Command)
def up(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the whole system in one process: gateway, worker and queue, on the embedded default."""
    from aitasks.api.app import create_app

    settings = _settings(serving=True).auth_for_host(host)
    _on_database(settings, upgrade)

    async def main() -> None:
        queue = "the in-process queue"
        if settings.redis_configured:
            queue = f"Redis at {settings.effective_redis_url}"
        typer.echo(
            f"aitasks on http://{host}:{port} (API docs at /docs)\n"
            f"  database: {settings.sqlalchemy_url}\n  queue: {queue}\n  {_auth_line(settings)}"
        )
        await _serve(create_app(settings, embedded=True), host, port, settings)

    run_service(main())


@app.command(cls=Command)
def api(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the gateway. Needs `aitasks db upgrade` first, and workers to run the tasks."""
    from aitasks.api.app import create_app

    settings = _settings(serving=True).auth_for_host(host)
    if not _on_database(settings, schema_state).up_to_date:
        raise _fail("the database schema is not current: run `aitasks db upgrade`")
    typer.echo(f"aitasks gateway on http://{host}:{port}; {_auth_line(settings)}")
    run_service(_serve(create_app(settings), host, port, settings))


def _auth_line(settings: Settings) -> str:
    if settings.auth_enabled:
        return "auth: on (API keys from `aitasks keys create`)"
    return "auth: OFF: anyone who can reach this port can use it; keep it bound to localhost"


@app.command(cls=Command)
def worker(
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues; all of the model table's if not given."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Tasks in flight at once. "
            f"\\[default: AITASKS_WORKER_CONCURRENCY, else {DEFAULT_CONCURRENCY}]",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Run a worker: take tasks from the queues, call the models, store the results."""
    settings = _settings(serving=True)
    if metrics_port is not None:
        prometheus_client.start_http_server(metrics_port)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    async def main() -> None:
        services = Services.open(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            # A worker may start before its database is reachable: it waits rather than dies.
            state = await retry_database(lambda: schema_state(services.db), "checking the schema")
            if not state.up_to_date:
                raise _fail("the database schema is not current: run `aitasks db upgrade`")
            await services.warm()
            in_flight = concurrency or settings.worker_concurrency
            await Worker(services, queues=names, concurrency=in_flight).run(stop)
        finally:
            await services.close()

    run_service(main())


Url = Annotated[str, typer.Option(envvar="AITASKS_URL", help="The gateway.")]
ApiKey = Annotated[str | None, typer.Option(envvar="AITASKS_API_KEY", help="An API key.")]
Conversation = Annotated[
    str | None, typer.Option("--conversation", "-c", help="Continue this conversation.")
]


@app.command(cls=Command)
def chat(
    prompt: Annotated[
        str | None, typer.Argument(help="Leave out for an interactive session.")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="The model; `GET /v1/models` lists them.")
    ] = "gemini-2.5-flash",
    conversation: Conversation = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Chat with a model through a running gateway; the reply streams in as it is written.

    Replies go to stdout, one a line; the prompt, the conversation id and errors go to stderr.
    """
    client = Client(url, api_key)

    def turn(text: str, conversation_id: str | None) -> str:
        reply = ReplyLine(sys.stdout)
        try:
            task = client.chat(
                text, model=model, conversation_id=conversation_id, on_text=reply.write
            )
        except BaseException:
            reply.end(finished=False)
            raise
        reply.end(finished=True)
        return str(task["conversation_id"])

    try:
        if prompt is not None:
            conversation = turn(prompt, conversation)
        else:
            typer.secho(f"chatting with {model}; an empty line or Ctrl-D ends", err=True, dim=True)
            while line := _read_line("you> "):
                conversation = turn(line, conversation)
    except ClientError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()
    if conversation:
        typer.secho(f"conversation: {conversation}", err=True, dim=True)


def _read_line(prompt: str) -> str:
    """A line typed by the user. The prompt goes where the user looks, never into stdout's
    replies: to the terminal through `input` when stdout is one, to stderr when stdout is piped,
    and nowhere when stdin is not a terminal (the lines come from a file or a pipe)."""
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return input(prompt).strip()
        if sys.stdin.isatty():
            sys.stderr.write(prompt)
            sys.stderr.flush()
        return input().strip()
    except EOFError:
        return ""


@app.command(cls=Command)
def image(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to save it.")] = Path(
        "image.png"
    ),
    model: Annotated[
        str, typer.Option("--model", "-m", help="An image model; `GET /v1/models` lists them.")
    ] = "stable-diffusion-3",
    conversation: Conversation = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Generate an image through a running gateway and save it as a PNG."""
    client = Client(url, api_key)
    console = Console(stderr=True)
    try:
        with console.status("submitting") as status:
            task, images = client.image(
                prompt,
                model=model,
                conversation_id=conversation,
                on_status=lambda state: status.update(state.lower()),
            )
    except ClientError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()
    paths = (
        [output]
        if len(images) == 1
        else [output.with_stem(f"{output.stem}-{n}") for n in range(1, len(images) + 1)]
    )
    for path, png in zip(paths, images, strict=True):
        path.write_bytes(png)
        typer.echo(str(path))
    typer.secho(f"conversation: {task['conversation_id']}", err=True, dim=True)


@app.command(cls=Command)
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every two seconds until Ctrl-C.")
    ] = False,
    batch: BatchId = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Queues, lanes, workers, your running batches, recent failures; or one batch's progress."""
    client = Client(url, api_key)
    try:
        if batch is not None:
            follow_batch(lambda: client.batch(batch), as_json=as_json, watch=watch)
        elif as_json:
            typer.echo(json.dumps(client.status(), indent=2))
        elif watch:
            with Live(status_view(client.status()), refresh_per_second=1) as live:
                while True:
                    time.sleep(2)
                    live.update(status_view(client.status()))
        else:
            Console().print(status_view(client.status()))
    except ClientError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def _on_database(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    """Run one async action on a database opened for it, and close it again."""

    async def run() -> T:
        db = Database(settings.sqlalchemy_url)
        try:
            return await action(db)
        finally:
            await db.dispose()

    try:
        with database_boundary():
            return asyncio.run(run())
    except ConfigError as exc:
        raise _fail(exc.message) from None
    except DatabaseUnavailable as exc:
        raise _fail(f"{exc.message}: {exc.__cause__}") from None


@db_app.command(cls=Command, name="upgrade")
def db_upgrade() -> None:
    """Create or migrate the tables to this version's schema."""
    before = _on_database(_settings(), upgrade)
    if before.up_to_date:
        typer.echo(f"The database schema is up to date (revision {before.head}).")
    else:
        typer.echo(
            f"Upgraded the database schema from {before.current or 'empty'} to {before.head}."
        )


@db_app.command(cls=Command, name="current")
def db_current() -> None:
    """Say which schema revision the database is at."""
    state = _on_database(_settings(), schema_state)
    verdict = "up to date" if state.up_to_date else "behind: run `aitasks db upgrade`"
    typer.echo(f"revision {state.current or 'none'} (newest {state.head}): {verdict}")


DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")]


@app.command(cls=Command)
def purge(dry_run: DryRun = False) -> None:
    """Remove what is past its retention now (workers also do it, in the background)."""
    settings = _settings()
    typer.echo(_on_database(settings, lambda db: purge_now(settings, db, dry_run=dry_run)))


def _limits(key: ApiKeyRow) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("rpm", key.rpm),
            ("max-inflight", key.max_inflight),
            ("daily-tokens", key.daily_tokens),
            ("weight", key.weight),
            ("max-priority", key.max_priority),
            ("expires-after", key.expires_after),
        )
        if value is not None
    ]
    return ", ".join(parts) or "none"


@keys_app.command(cls=Command, name="create")
def keys_create(
    name: Annotated[str, typer.Option(help="A unique name for the key.")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant it acts for. \\[default: the key's name]")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    max_inflight: Annotated[int | None, typer.Option(min=1, help="Unfinished tasks.")] = None,
    daily_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per UTC day.")] = None,
    weight: KeyWeight = None,
    max_priority: MaxPriority = None,
    expires_after: ExpiresAfter = None,
) -> None:
    """Make a key. Its secret is the last line printed, shown this once; only a hash is kept."""

    async def create(db: Database) -> tuple[ApiKeyRow, str]:
        async with db.session() as session:
            return await store_keys.create_key(
                session, name=name, tenant=tenant, rpm=rpm, max_inflight=max_inflight,
                daily_tokens=daily_tokens, weight=weight, max_priority=max_priority,
                expires_after=expires_after,
            )  # fmt: skip

    try:
        key, secret = _on_database(_settings(), create)
    except AITasksError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"key {key.name} (id {key.id}) for tenant {key.tenant}; limits: {_limits(key)}")
    typer.echo(f"webhook signing secret: {key.webhook_secret}")
    typer.echo("the key (shown this once; send it as `Authorization: Bearer <key>`):")
    typer.echo(secret)


@keys_app.command(cls=Command, name="list")
def keys_list() -> None:
    """Every key: name, id, tenant, limits, and whether it is revoked. Never the secret."""

    async def rows(db: Database) -> Sequence[ApiKeyRow]:
        async with db.session() as session:
            return await store_keys.list_keys(session)

    for key in _on_database(_settings(), rows):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        typer.echo(f"{key.name}\t{key.id}\ttenant={key.tenant}\tlimits: {_limits(key)}\t{state}")


@keys_app.command(cls=Command, name="revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name or id.")]) -> None:
    """Revoke a key: requests with it are refused from now on."""

    async def revoke(db: Database) -> ApiKeyRow:
        async with db.session() as session:
            return await store_keys.revoke_key(session, name)

    try:
        key = _on_database(_settings(), revoke)
    except AITasksError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"revoked {key.name} (id {key.id})")


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc.message}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
