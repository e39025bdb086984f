"""One queue's waiting work, by lane and tenant, handed out as `aitasks.priority` says: the
in-process queue's, and the reference the Redis script (`queue/redis_scripts.py`) follows step
for step.

A lane keeps a list per tenant and a ring of the tenants with work waiting, each with its pass;
the lowest pass goes next, and is then moved on by 1 / the weight of the entry served. A tenant
whose list runs dry leaves the ring; one that joins it starts at the lane's clock (the pass of the
last tenant served), so a tenant idle for a while gets no burst of saved-up turns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from aitasks.priority import LANES, RANK, Lane, lane_at


@dataclass(slots=True)
class Waiting:
    """One entry waiting in a lane: what it hands out, and its tenant's weight."""

    item: object
    weight: int
    # When it was queued (the clock of whoever keeps it), for the oldest wait.
    at: float


@dataclass(slots=True)
class _Lane:
    lists: dict[str, deque[Waiting]] = field(default_factory=dict)
    # The tenants with work waiting, and each one's pass.
    ring: dict[str, float] = field(default_factory=dict)
    clock: float = 0.0

    def push(self, tenant: str, entries: Sequence[Waiting]) -> None:
        if tenant not in self.ring:
            self.ring[tenant] = self.clock
        self.lists.setdefault(tenant, deque()).extend(entries)

    def pop(self) -> Waiting:
        # The lowest pass; ties go to the tenant first in name order, as Redis' ZRANGE does.
        tenant = min(self.ring, key=lambda t: (self.ring[t], t))
        passed = self.ring[tenant]
        waiting = self.lists[tenant]
        entry = waiting.popleft()
        self.clock = passed
        if waiting:
            self.ring[tenant] = passed + 1 / entry.weight
        else:
            del self.ring[tenant], self.lists[tenant]
        return entry


class FairLanes:
    """One queue's lanes."""

    def __init__(self) -> None:
        self._lanes = {lane: _Lane() for lane in LANES}
        # Tasks handed out so far: the position in the share schedule.
        self.picks = 0

    def push(self, lane: Lane, tenant: str, entries: Sequence[Waiting]) -> None:
        self._lanes[lane].push(tenant, entries)

    def waiting(self) -> set[Lane]:
        """The lanes with work waiting."""
        return {lane for lane, state in self._lanes.items() if state.ring}

    def next_lane(self, allowed: Collection[Lane] = LANES) -> Lane | None:
        return lane_at(self.picks, self.waiting(), allowed)

    def pop(self, lane: Lane) -> Waiting:
        """Hand out the next entry of `lane` (which has work waiting)."""
        self.picks += 1
        return self._lanes[lane].pop()

    def depth(self, lanes: Collection[Lane] = LANES) -> int:
        return sum(len(q) for lane in lanes for q in self._lanes[lane].lists.values())

    def items(self) -> list[object]:
        return [w.item for state in self._lanes.values() for q in state.lists.values() for w in q]

    def oldest(self, lane: Lane) -> float | None:
        """When the oldest entry waiting in `lane` was queued."""
        heads = [q[0].at for q in self._lanes[lane].lists.values() if q]
        return min(heads) if heads else None


def take(
    queues: Sequence[FairLanes], count: int, allowed: Collection[Lane] = LANES
) -> list[tuple[int, Waiting]]:
    """Up to `count` entries from several queues' lanes (the `allowed` ones), each pick from
    the queue whose next lane is highest (the first such queue in the order given): (queue
    index, entry)."""
    taken: list[tuple[int, Waiting]] = []
    while len(taken) < count:
        best: tuple[int, Lane] | None = None
        for index, lanes in enumerate(queues):
            lane = lanes.next_lane(allowed)
            if lane is not None and (best is None or RANK[lane] < RANK[best[1]]):
                best = (index, lane)
        if best is None:
            break
        taken.append((best[0], queues[best[0]].pop(best[1])))
    return taken
