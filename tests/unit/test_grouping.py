"""Group commit (aitasks/grouping.py): items handed in together share a group, those handed in
while groups are on their way the next; each caller hears its own result or error; a group's
failure is its own; a stopped sender leaves nobody waiting."""

from __future__ import annotations

import asyncio

import pytest

from aitasks.grouping import Groups, ResultGroups


async def test_items_handed_in_together_share_a_group_and_later_ones_the_next() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        sent.append(items)
        if len(sent) == 1:
            await release.wait()
        return [i * 10 for i in items]

    groups: ResultGroups[int, int] = ResultGroups(send, most=100, in_flight=1)
    first = [asyncio.ensure_future(groups.hand_in(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(groups.hand_in(i)) for i in range(3, 5)]
    await asyncio.sleep(0.01)
    assert sent == [[0, 1, 2]]  # one group in flight at a time: the later ones wait for it
    release.set()
    assert await asyncio.gather(*first, *later) == [0, 10, 20, 30, 40]
    assert sent == [[0, 1, 2], [3, 4]]


async def test_two_in_flight_sends_the_next_group_while_the_first_is_on_its_way() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[None]:
        sent.append(items)
        await release.wait()
        return [None] * len(items)

    groups: Groups[int] = Groups(send, most=100, in_flight=2)
    first = asyncio.ensure_future(groups.hand_in(1))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(groups.hand_in(2))
    await asyncio.sleep(0.01)
    assert sent == [[1], [2]]
    release.set()
    assert await asyncio.gather(first, second) == [None, None]


async def test_an_item_s_error_is_its_own_and_a_send_s_error_its_group_s_alone() -> None:
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int | Exception]:
        if 99 in items:
            await release.wait()
            raise RuntimeError("down")
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    groups: ResultGroups[int, int] = ResultGroups(send, most=100, in_flight=1)
    got = await asyncio.gather(
        groups.hand_in(1), groups.hand_in(-1), groups.hand_in(2), return_exceptions=True
    )
    assert got[0] == 1 and got[2] == 2 and isinstance(got[1], ValueError)
    failing = asyncio.gather(groups.hand_in(3), groups.hand_in(99), return_exceptions=True)
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(groups.hand_in(4))  # the next group, behind the failing one
    await asyncio.sleep(0.01)
    release.set()
    assert all(isinstance(e, RuntimeError) for e in await failing)
    assert await waiting == 4
    assert await groups.hand_in(5) == 5


async def test_a_group_takes_at_most_its_share_and_the_rest_follow() -> None:
    sizes: list[int] = []

    async def send(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    groups: ResultGroups[int, int] = ResultGroups(send, most=4, in_flight=1)
    assert await asyncio.gather(*(groups.hand_in(i) for i in range(10))) == list(range(10))
    assert sizes == [4, 4, 2]


async def test_a_caller_that_stops_waiting_neither_stops_its_group_nor_drops_its_item() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        await release.wait()
        sent.append(items)
        return list(items)

    groups: ResultGroups[int, int] = ResultGroups(send, most=100, in_flight=1)
    leaving = asyncio.ensure_future(groups.hand_in(1))
    staying = asyncio.ensure_future(groups.hand_in(2))
    await asyncio.sleep(0.01)
    leaving.cancel()
    release.set()
    assert await staying == 2
    assert sent == [[1, 2]]


async def test_a_cancelled_sender_fails_every_item_still_waiting() -> None:
    async def send(items: list[int]) -> list[int]:
        await asyncio.Event().wait()  # never answers
        return list(items)

    groups: ResultGroups[int, int] = ResultGroups(send, most=1, in_flight=1)
    callers = [asyncio.ensure_future(groups.hand_in(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    for sender in list(groups.senders):
        sender.cancel()
    for caller in callers:  # the one on its way and the two behind it
        with pytest.raises(asyncio.CancelledError):
            await caller


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_an_item_handed_in_as_its_sender_leaves_gets_a_sender(in_flight: int) -> None:
    """The caller of the last group wakes before its sender's done callbacks have run; what it
    hands in then must not wait for a sender that has already left."""

    async def send(items: list[int]) -> list[int]:
        return list(items)

    groups: ResultGroups[int, int] = ResultGroups(send, most=100, in_flight=in_flight)

    async def one_after_another() -> list[int]:
        return [await groups.hand_in(item) for item in range(5)]  # awaited directly, no task

    assert await asyncio.wait_for(one_after_another(), 1) == list(range(5))
