"""The mutex table on its own: who holds, who waits, and what frees a mutex."""

from __future__ import annotations

import pytest

from gatekeeper.model.build import Build, BuildResult
from gatekeeper.scheduler.mutex import Mutexes

pytestmark = pytest.mark.timeout(10)


def running(job: str, item: str = "item-a") -> Build:
    return Build(job=job, item_uuid=item)


def test_one_holder_and_the_others_wait_until_it_completes() -> None:
    mutexes = Mutexes()
    first = running("unit")
    assert mutexes.free_for("db", "item-a", "unit")
    mutexes.take("db", first)
    # Another item's job, and another job of the same item, both wait.
    assert not mutexes.free_for("db", "item-b", "unit")
    assert not mutexes.free_for("db", "item-a", "functional")
    assert mutexes.waiting_of("item-a") == {"functional": "db"}
    assert mutexes.held() == {"db": str(first)}
    # Another mutex is another matter.
    assert mutexes.free_for("docs", "item-b", "docs")

    mutexes.release(first)
    assert mutexes.free_for("db", "item-b", "unit")
    assert mutexes.waiting_of("item-b") == {}


@pytest.mark.parametrize("ending", ["result", "canceled"])
def test_a_holder_that_ended_unreleased_frees_its_mutex(ending: str) -> None:
    """A release that never came (a result for a build no manager found)
    delays a waiter by one pass at most."""
    mutexes = Mutexes()
    holder = running("unit")
    mutexes.take("db", holder)
    assert not mutexes.free_for("db", "item-b", "unit")
    if ending == "result":
        holder.result = BuildResult.FAILURE
    else:
        holder.canceled = True
    assert mutexes.free_for("db", "item-b", "unit")


def test_restored_builds_take_their_mutexes_again() -> None:
    mutexes = Mutexes()
    unit, lint, done = running("unit"), running("lint", "item-b"), running("docs")
    done.result = BuildResult.SUCCESS
    mutexes.retake([unit, lint, done], {"unit": "db", "lint": "db", "docs": "docs"})
    # The first restored build of a mutex holds it; a finished one holds nothing.
    assert mutexes.held() == {"db": str(unit)}
    assert not mutexes.free_for("db", "item-c", "unit")
    assert mutexes.free_for("docs", "item-c", "docs")


def test_an_item_that_left_waits_for_nothing() -> None:
    mutexes = Mutexes()
    mutexes.take("db", running("unit"))
    assert not mutexes.free_for("db", "item-b", "unit")
    mutexes.forget_item("item-b")
    assert mutexes.waiting_of("item-b") == {}
