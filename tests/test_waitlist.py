"""The order and the shares of a pool's places (`datasvc.waitlist`), without connections.

tests/test_pool.py proves the same rules end to end on real connections; these pin the rules alone.
"""

from __future__ import annotations

from datasvc.waitlist import LOOK_AHEAD, MAX_PASSED, RESERVE, Waiter, Waitlist


def _full(size: int = 2) -> Waitlist:
    """A waitlist whose places are all held (by open requests), so every newcomer queues."""
    waitlist = Waitlist(size)
    for _ in range(size):
        assert waitlist.enter(None)
    return waitlist


async def test_a_free_place_is_taken_at_once_and_then_newcomers_queue() -> None:
    waitlist = Waitlist(1)
    assert waitlist.enter(None)
    assert not waitlist.enter(None)
    waitlist.join("datasvc", None)
    assert waitlist.queued


async def test_waiters_are_served_in_arrival_order() -> None:
    waitlist = _full()
    first, second = waitlist.join("datasvc", None), waitlist.join("datasvc", None)
    assert waitlist.take(None) is first
    assert waitlist.take(None) is second
    assert waitlist.take(None) is None


async def test_a_connection_goes_to_a_waiter_of_its_caller_near_the_head() -> None:
    waitlist = _full()
    head = waitlist.join("datasvc:bob", "bob")
    alice = waitlist.join("datasvc:alice", "alice")
    assert waitlist.take("datasvc:alice") is alice
    assert head.passed == 1
    assert waitlist.take("datasvc:alice") is head


async def test_the_head_is_passed_over_at_most_max_passed_times() -> None:
    waitlist = _full()
    head = waitlist.join("datasvc:bob", "bob")
    alices = [waitlist.join("datasvc:alice", "alice") for _ in range(MAX_PASSED + 1)]
    served = [waitlist.take("datasvc:alice") for _ in range(MAX_PASSED + 1)]
    assert served == [*alices[:MAX_PASSED], head]


async def test_a_waiter_of_the_caller_beyond_the_look_ahead_is_not_preferred() -> None:
    waitlist = _full()
    others = [waitlist.join("datasvc:bob", "bob") for _ in range(LOOK_AHEAD + 1)]
    waitlist.join("datasvc:alice", "alice")
    assert waitlist.take("datasvc:alice") is others[0]


async def test_a_caller_holds_at_most_all_places_but_the_reserve() -> None:
    size = RESERVE + 2
    waitlist = Waitlist(size)
    for _ in range(size - RESERVE):
        assert waitlist.enter("alice")
    assert not waitlist.enter("alice")  # a place is free, but not for alice
    assert waitlist.enter("bob")


async def test_a_waiter_over_its_share_is_skipped_until_its_caller_lets_go() -> None:
    waitlist = Waitlist(RESERVE + 1)
    assert waitlist.enter("alice")
    assert waitlist.enter(None)
    over = waitlist.join("datasvc:alice", "alice")
    bob = waitlist.join("datasvc:bob", "bob")
    assert waitlist.take(None) is bob
    waitlist.unhold("alice")
    assert waitlist.take(None) is over


async def test_granted_gives_each_free_place_to_the_next_waiter() -> None:
    waitlist = _full()
    first, second = waitlist.join("datasvc", None), waitlist.join("datasvc", None)
    waitlist.free += 1
    assert list(waitlist.granted()) == [first]
    assert (waitlist.free, waitlist.queued) == (0, True)
    assert _served(waitlist) == [second]


async def test_a_cancelled_waiter_is_skipped() -> None:
    waitlist = _full()
    gone = waitlist.join("datasvc", None)
    stays = waitlist.join("datasvc", None)
    gone.future.cancel()
    assert waitlist.take(None) is stays
    waitlist.leave(gone)  # already dropped: leaving again is harmless


def _served(waitlist: Waitlist) -> list[Waiter]:
    waitlist.free += 1
    return list(waitlist.granted())
