"""The worker's group commit (`aitasks.grouping`): claims, finished tasks, event appends and
acknowledgements each go through one `ResultGroups`, so the round trips of tasks running side by
side are paid once per flush rather than once per task. Each caller still waits for its own
result: nothing is reported done before its flush is.
"""

from __future__ import annotations

from typing import TypeVar

from aitasks.grouping import ResultGroups, Send

T = TypeVar("T")
R = TypeVar("R")

# Most items one flush takes; the rest wait for the next.
MOST_PER_FLUSH = 100
# One flush on its way at a time: what comes meanwhile waits for it and goes in the next, so
# under load the flushes grow (CPU per task falls) instead of going out half empty side by side.
FLUSHES_IN_FLIGHT = 1


def flushes(send: Send[T, R]) -> ResultGroups[T, R]:
    """Group commit through `send`, one flush in flight at a time."""
    return ResultGroups(send, most=MOST_PER_FLUSH, in_flight=FLUSHES_IN_FLIGHT)
