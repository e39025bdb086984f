"""One page of a newest-first list, as every list route answers it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Row = TypeVar("Row")


class Page(Generic[Row]):
    """One page of a newest-first list, fetched with one row more than asked to learn if more
    follow."""

    def __init__(self, rows: Sequence[Row], limit: int, key: Callable[[Row], str]) -> None:
        self.rows = rows[:limit]
        self.has_more = len(rows) > limit
        self.next_after = key(self.rows[-1]) if self.has_more else None
