"""One blocking read per gateway for every reader waiting on a Redis event log.

A waiting read (an SSE stream between events, a `Prefer: wait`) would otherwise hold a connection of
its own for an XREAD of its own. Here one task holds one connection and one XREAD over the streams
of every task waited on, each stream read from the oldest id any of its waiters has seen, and hands
each waiter what came after its own id: what its own XREAD would have answered, in order.

A waiter that the blocked XREAD does not cover ends the block early (CLIENT UNBLOCK, from another
connection, answered as a timeout), so the next XREAD includes it. When the read fails (Redis is
down, or restarted under it), every waiter gets the error, as its own read would have.

Single Redis only: on a cluster the streams of different tasks hash to different slots, which one
XREAD cannot span, so there each waiter reads alone (see `events.redis`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from aitasks.errors import RedisUnavailable
from aitasks.redis_connect import redis_boundary
from aitasks.redis_keys import EVENT_TYPE_FIELD

log = logging.getLogger(__name__)

# An entry as redis-py's XREAD gives it: its id and its fields.
Entry = tuple[str, dict[str, str]]
# Where an id falls in a stream: (milliseconds, sequence).
Position = tuple[int, int]

_U64 = 2**64 - 1
# How long one shared XREAD blocks when nothing comes and nobody new waits: well inside the
# client's socket timeout (events.redis), which would otherwise cut it.
BLOCK_MS = 20_000
# A round that named at least this many streams and found something waits PACE_SECONDS before
# the next, so that the next finds more at once: an XREAD costs Redis for every stream it names,
# and under load one that goes straight back finds only the one or two that came meanwhile.
PACE_FROM_STREAMS = 64
PACE_SECONDS = 0.0005
# The XREAD's head, as RESP: the command is built by hand, since redis-py's packing of a few
# hundred arguments every round is most of what the reader costs.
_XREAD_HEAD = b"$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$%d\r\n%d\r\n$7\r\nSTREAMS\r\n" % (
    len(str(BLOCK_MS)),
    BLOCK_MS,
)
# How soon CLIENT UNBLOCK is sent again when it found the XREAD not yet blocked on the server (sent,
# but not yet read by Redis).
UNBLOCK_AGAIN_SECONDS = 0.001


def stream_position(event_id: str) -> Position | None:
    """Where `event_id` ("ms-seq", or "ms" for "ms-0", as XREAD reads it) falls in a stream; None
    for an id Redis would refuse, which is left to a reader's own XREAD to answer."""
    head, dash, tail = event_id.partition("-")
    if dash and not tail:
        return None
    tail = tail or "0"
    if not (head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit()):
        return None
    ms, seq = int(head), int(tail)
    return (ms, seq) if ms <= _U64 and seq <= _U64 else None


class SharedReadRefused(Exception):
    """Redis refuses a command the shared read needs (CLIENT ID, CLIENT UNBLOCK: a managed Redis
    may): the waiter reads alone, as every later one will."""


def _bulk(text: str) -> bytes:
    """`text` as a RESP bulk string."""
    raw = text.encode()
    return b"$%d\r\n%b\r\n" % (len(raw), raw)


@dataclass(eq=False, slots=True)
class _Waiter:
    key: str
    after: Position
    found: asyncio.Future[list[Entry]]
    after_arg: bytes  # `after` as the XREAD's argument
    # Handed its entries only once one of this type comes (None: at the first); those before it
    # are kept in `seen`, and `after` moves past them, so the stream's next XREAD still covers it.
    until: str | None = None
    seen: list[Entry] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Stream:
    """A stream waited on: its waiters and its name as the XREAD's argument."""

    name: bytes
    waiters: set[_Waiter]


class SharedStreamReader:
    """Waiting reads of many streams through one XREAD on one connection of `redis`'s pool."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._streams: dict[str, _Stream] = {}
        self._someone_waits = asyncio.Event()
        # What the XREAD being sent or blocked reads: each stream and the id it reads after.
        self._reading: dict[str, Position] = {}
        self._blocked = False  # the XREAD has been sent and not yet answered
        self._uncovered = False  # someone waits whom that XREAD does not cover
        self._connection: AbstractConnection | None = None
        self._client_id: int | None = None
        self._loop: asyncio.Task[None] | None = None
        self._waking: asyncio.Task[None] | None = None
        self.refused = False  # see SharedReadRefused
        self._idle = False  # nobody has waited since the last XREAD

    @property
    def waiting(self) -> int:
        """How many reads wait now."""
        return sum(len(stream.waiters) for stream in self._streams.values())

    async def read(
        self, key: str, after: Position, wait_seconds: float, *, until: str | None = None
    ) -> list[Entry]:
        """The entries of stream `key` after `after`, once there are any (with `until`: once one
        of that type is among them); after `wait_seconds`, those that came (maybe none). Raises
        `RedisUnavailable` when the shared read fails so, and `SharedReadRefused` when Redis
        refuses it."""
        if self.refused:
            raise SharedReadRefused
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name="shared event-log reader")
        found = asyncio.get_running_loop().create_future()
        waiter = _Waiter(key, after, found, _bulk(f"{after[0]}-{after[1]}"), until)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(_bulk(key), set())
        stream.waiters.add(waiter)
        self._someone_waits.set()
        start = self._reading.get(key)
        if start is None or start > after:
            self._uncovered = True
            if self._blocked:
                self._wake()
        try:
            async with asyncio.timeout(wait_seconds):
                return await waiter.found
        except TimeoutError:
            return waiter.seen
        finally:
            self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        if waiter.found.done() and not waiter.found.cancelled():
            waiter.found.exception()  # handed one as its wait ended: not worth a log line
        stream = self._streams.get(waiter.key)
        if stream is not None:
            stream.waiters.discard(waiter)
            if not stream.waiters:
                del self._streams[waiter.key]

    async def _run(self) -> None:
        while True:
            await self._someone_waits.wait()
            if self.refused:
                self._fail_all(SharedReadRefused())
                return
            if not self._streams:
                self._someone_waits.clear()
                self._idle = True
                continue
            reading: dict[str, Position] = {}
            names: list[bytes] = []
            ids: list[bytes] = []
            for key, stream in self._streams.items():
                waiters = stream.waiters
                first = next(iter(waiters)) if len(waiters) == 1 else min(waiters, key=_after)
                reading[key] = first.after
                names.append(stream.name)
                ids.append(first.after_arg)
            self._reading, self._uncovered = reading, False
            command = b"".join([b"*%d\r\n" % (4 + 2 * len(names)), _XREAD_HEAD, *names, *ids])
            try:
                found = await self._xread(command)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._fail_all(exc)
                continue
            finally:
                self._reading = {}
            self._hand_out(reading, found)
            if found and len(reading) >= PACE_FROM_STREAMS:
                await asyncio.sleep(PACE_SECONDS)

    async def _xread(self, command: bytes) -> Any:
        try:
            with redis_boundary():
                if self._idle and self._connection is not None:
                    await self._check_connection(self._connection)
                self._idle = False
                connection = self._connection or await self._connect()
                await connection.send_packed_command(command)
                self._blocked = True
                if self._uncovered:  # someone came while it was being sent
                    self._wake()
                return await connection.read_response()
        except BaseException:
            await self._drop_connection()
            raise
        finally:
            self._blocked = False

    async def _check_connection(self, connection: AbstractConnection) -> None:
        """Drop the connection if it was closed while idle (Redis restarted), as the pool checks
        one before handing it out: a waiter should not see an outage that has passed."""
        try:
            closed = await connection.can_read()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            closed = True
        if closed:
            await self._drop_connection()

    async def _connect(self) -> AbstractConnection:
        connection: AbstractConnection = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        self._connection = connection
        await connection.send_command("CLIENT", "ID")
        try:
            self._client_id = int(await connection.read_response())
        except redis_errors.ResponseError as exc:
            self._refuse(exc)
            raise SharedReadRefused from exc
        return connection

    async def _drop_connection(self) -> None:
        connection, self._connection, self._client_id = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            await self._redis.connection_pool.release(connection)

    def _hand_out(self, reading: dict[str, Position], found: Any) -> None:
        """Give each waiter the entries after its id, when the XREAD read its stream from there
        or from before."""
        streams = found.items() if isinstance(found, dict) else (found or [])
        for key, raw in streams:
            stream = self._streams.get(key)
            if stream is None:
                continue
            waiting = stream.waiters
            entries = [(entry_id, _fields(fields)) for entry_id, fields in raw]
            positions = [stream_position(entry_id) or (0, 0) for entry_id, _ in entries]
            start = reading.get(key)
            for waiter in list(waiting):
                if waiter.found.done() or start is None or waiter.after < start:
                    continue  # came later, from further back: the next XREAD covers it
                fresh = [e for e, at in zip(entries, positions, strict=True) if at > waiter.after]
                if not fresh:
                    continue
                if waiter.until is not None and all(
                    fields.get(EVENT_TYPE_FIELD) != waiter.until for _, fields in fresh
                ):
                    waiter.seen += fresh
                    waiter.after, waiter.after_arg = positions[-1], _bulk(fresh[-1][0])
                    continue
                waiter.found.set_result(waiter.seen + fresh)
                waiting.discard(waiter)
            if not waiting:
                del self._streams[key]

    def _fail_all(self, exc: Exception) -> None:
        if not isinstance(exc, RedisUnavailable | SharedReadRefused):
            log.warning("shared event-log read failed: %r", exc)
        for stream in self._streams.values():
            for waiter in stream.waiters:
                if not waiter.found.done():
                    waiter.found.set_exception(_own(exc))
        self._streams.clear()

    def _wake(self) -> None:
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._unblock(), name="shared event-log wake")

    async def _unblock(self) -> None:
        """End the blocked XREAD, which does not cover a waiter, so that the next one does."""
        await asyncio.sleep(0)  # an answer already on its way makes it needless
        while self._blocked and self._uncovered and self._client_id is not None:
            try:
                ended = await self._redis.client_unblock(self._client_id)  # as a timeout
            except redis_errors.ResponseError as exc:
                self._refuse(exc)
                return
            except Exception:
                return  # Redis is out of reach: the XREAD fails too, and says so to its waiters
            if ended:
                return
            await asyncio.sleep(UNBLOCK_AGAIN_SECONDS)  # not blocked on the server yet

    def _refuse(self, exc: Exception) -> None:
        """Stop sharing: the waiters the blocked XREAD does not cover read alone now; those it
        does are answered by it, and then read alone too."""
        log.warning(
            "Redis refused the shared read of event logs (%s): each waiter reads alone", exc
        )
        self.refused = True
        self._someone_waits.set()
        for key, stream in list(self._streams.items()):
            start = self._reading.get(key)
            for waiter in list(stream.waiters):
                if start is None or waiter.after < start:
                    waiter.found.set_exception(SharedReadRefused())
                    stream.waiters.discard(waiter)
            if not stream.waiters:
                del self._streams[key]

    async def close(self) -> None:
        for task in (self._waking, self._loop):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop_connection()


def _own(exc: Exception) -> Exception:
    """An exception of a waiter's own to raise (tasks raising one object share its traceback)."""
    if isinstance(exc, RedisUnavailable):
        return RedisUnavailable(str(exc))
    if isinstance(exc, SharedReadRefused):
        return SharedReadRefused()
    return exc


def _after(waiter: _Waiter) -> Position:
    return waiter.after


def _fields(raw: Any) -> dict[str, str]:
    """An entry's fields: a flat [field, value, ...] list as RESP2 answers, or already a dict."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))
