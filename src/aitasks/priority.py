"""Priority lanes and fair share: which lane a task runs in, and the order workers serve them.

Every task has a lane: `interactive` (someone is waiting: the web page, the terminal client, a
streamed or waited-for submit, the OpenAI sync path), `default`, or `batch` (bulk work, batches).
A queue hands out its higher lanes first, but not only: of every `SHARE_CYCLE` tasks a queue
hands out, the picks the schedule gives a lower lane go to it whenever it has work waiting
(`GUARANTEED`: 2 of 20 to `default`, 1 of 20 to `batch`), so no lane starves however busy the
ones above it are. Within a lane, tenants with work waiting are served in turn, weighted by
their key's weight (stride scheduling: each tenant has a pass that grows by 1 / weight when it
is served, and the lowest pass goes next; a tenant that comes back after an idle spell starts at
the lane's current pass, with no credit saved up).

The queue backends carry this out (`queue/lanes.py` in memory, a Lua script on Redis); this module
holds the plain values they and the rest share.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Lane(StrEnum):
    """A task's priority, highest first."""

    INTERACTIVE = "interactive"
    DEFAULT = "default"
    BATCH = "batch"


# Highest first: the order lanes are served in.
LANES = (Lane.INTERACTIVE, Lane.DEFAULT, Lane.BATCH)
RANK = {lane: rank for rank, lane in enumerate(LANES)}

# The share schedule: the lane each pick of a cycle goes to when that lane has work waiting; a
# pick whose lane has none goes to the highest lane that has. Two of twenty picks are `default`'s
# and one `batch`'s, spread out, so under any load `default` gets at least 10% of a queue's picks
# and `batch` 5% (whenever they have work), and `interactive` all the rest it wants.
SHARE_CYCLE = 20
SCHEDULE: tuple[Lane, ...] = tuple(
    Lane.DEFAULT if pick in (6, 16) else Lane.BATCH if pick == 12 else Lane.INTERACTIVE
    for pick in range(SHARE_CYCLE)
)
GUARANTEED = {Lane.DEFAULT: 2, Lane.BATCH: 1}


def lane_at(pick: int, waiting: Collection[Lane], allowed: Collection[Lane] = LANES) -> Lane | None:
    """The lane the `pick`th task a queue hands out comes from, given the lanes with work
    waiting (None when none has), among the `allowed` ones."""
    waiting = [lane for lane in LANES if lane in waiting and lane in allowed]
    scheduled = SCHEDULE[pick % SHARE_CYCLE]
    if scheduled in waiting:
        return scheduled
    return waiting[0] if waiting else None


def capped(lane: Lane, highest: Lane | None) -> Lane:
    """`lane`, lowered to `highest` when a key may use no higher one."""
    if highest is not None and RANK[lane] < RANK[highest]:
        return highest
    return lane


# OpenAI's `service_tier` as a lane: `priority` is interactive, `flex` batch, the rest default.
SERVICE_TIERS = {"priority": Lane.INTERACTIVE, "flex": Lane.BATCH, "auto": Lane.DEFAULT,
                 "default": Lane.DEFAULT, "scale": Lane.DEFAULT}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Placement:
    """Where in its queue a task waits: its lane, whose share it counts against (its tenant),
    and that tenant's weight in the lane (its key's; 1 by default)."""

    lane: Lane = Lane.DEFAULT
    tenant: str = ""
    weight: int = 1

    @classmethod
    def of(cls, lane: str | None, tenant: str | None, weight: int | None) -> Placement:
        """From a task's stored columns (older rows have none: the default lane)."""
        return cls(Lane(lane or Lane.DEFAULT), tenant or "", max(1, weight or 1))


class QueuedTask(NamedTuple):
    """A task to hand to its queue: its id, its queue and its place there."""

    id: str
    queue: str
    placement: Placement = Placement()


def priority_lanes(lane: Lane) -> tuple[Lane, ...]:
    """The lanes a queue's depth limit counts for a submit in `lane`: the batch lane alone for
    batch work, the others for the rest, so a large batch waiting refuses no interactive turn."""
    return (Lane.BATCH,) if lane is Lane.BATCH else (Lane.INTERACTIVE, Lane.DEFAULT)
