"""A gate's change queue on its own: re-basing, its base, its window, restore."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.model.change import Change, MergeState, QueueItem
from gatekeeper.scheduler.queues import ChangeQueue, change_key


def pipeline(**settings: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "gate", "manager": "dependent", **settings})


def queue_of(*numbers: int, **settings: Any) -> ChangeQueue:
    queue = ChangeQueue("integrated", ["nova", "glance"], pipeline(**settings))
    for number in numbers:
        queue.items.append(QueueItem(change=Change("nova", "master", number, 1), pipeline="gate"))
    return queue


def walk(queue: ChangeQueue, failing: frozenset[int] = frozenset()) -> list[int]:
    """One walk as the gate's: the numbers of the items it re-based."""
    rebase = queue.rebase()
    rebased = []
    for item in queue.items:
        if rebase.place(item) is not None:
            rebased.append(item.change.number)
        if item.change.number not in failing:
            rebase.passed(item)
    return rebased


def keys_tested_with(queue: ChangeQueue) -> dict[int, list[str]]:
    return {i.change.number: list(i.tested_with or []) for i in queue.items}


def test_items_behind_a_failing_item_are_tested_without_it() -> None:
    queue = queue_of(1, 2, 3, 4)
    assert walk(queue) == [1, 2, 3, 4]  # the first walk bases every item
    assert walk(queue) == []  # nothing changed
    assert walk(queue, failing=frozenset({2})) == [3, 4]  # not 1, ahead; not 2 itself
    assert keys_tested_with(queue) == {
        1: [],
        2: ["nova 1,1"],
        3: ["nova 1,1"],
        4: ["nova 1,1", "nova 3,1"],
    }


def test_a_re_based_item_forgets_the_merger_state_of_the_old_one() -> None:
    queue = queue_of(1, 2)
    walk(queue)
    second = queue.items[1]
    second.zuul_ref, second.merge_state, second.merge_token = "refs/zuul/x", MergeState.OK, "t"
    walk(queue, failing=frozenset({1}))
    assert (second.zuul_ref, second.merge_state, second.merge_token) == ("", "", "")


def test_an_item_that_merged_becomes_part_of_the_base() -> None:
    queue = queue_of(1, 2, 3)
    walk(queue)
    head = queue.items.pop(0)
    queue.head_left(head, change_key(head.change))
    assert walk(queue) == []  # 2 and 3 were tested on top of 1: their builds still count


def test_the_items_behind_a_head_that_did_not_merge_are_re_based() -> None:
    queue = queue_of(1, 2, 3)
    walk(queue)
    head = queue.items.pop(0)
    queue.head_left(head, None)
    assert walk(queue) == [2, 3]


def test_a_promote_re_bases_the_items_whose_items_ahead_changed() -> None:
    queue = queue_of(1, 2, 3)
    walk(queue)
    queue.promote([queue.items[2]])
    assert [i.change.number for i in queue.items] == [3, 1, 2]
    assert walk(queue) == [3, 1, 2]


def test_blocked_merges_are_asked_again_when_the_head_leaves() -> None:
    queue = queue_of(1, 2)
    queue.items[1].merge_state = MergeState.BLOCKED
    head = queue.items.pop(0)
    queue.head_left(head, None)
    assert queue.items[0].merge_state == MergeState.UNASKED


@pytest.mark.parametrize(
    ("settings", "outcomes", "window"),
    [
        ({"window": 4}, [True, True], 6),
        (
            {"window": 4, "window-increase-type": "exponential", "window-increase-factor": 2},
            [True],
            8,
        ),
        ({"window": 8}, [False], 4),
        ({"window": 8, "window-floor": 5}, [False], 5),
        ({"window": 8, "window-decrease-type": "linear", "window-decrease-factor": 3}, [False], 5),
        ({"window": 0}, [False, True], 0),
    ],
    ids=["grows-by-one", "grows-exponentially", "halves", "floor", "shrinks-linearly", "no-limit"],
)
def test_the_window_grows_on_a_merge_and_shrinks_on_a_failure(
    settings: dict[str, Any], outcomes: list[bool], window: int
) -> None:
    queue = queue_of(*range(1, len(outcomes) + 1), **settings)
    walk(queue)
    for merged in outcomes:
        head = queue.items.pop(0)
        queue.head_left(head, change_key(head.change) if merged else None)
    assert queue.window == window


def test_a_reconfiguration_carries_the_window_and_the_base_over() -> None:
    old = queue_of(1, 2, window=4)
    walk(old)
    head = old.items.pop(0)
    old.head_left(head, change_key(head.change))
    new = queue_of(window=10)
    new.carry_over(old)
    new.items = old.items
    assert new.window == 5
    assert walk(new) == []
    untouched = queue_of(window=10)
    untouched.carry_over(queue_of(window=4))
    assert untouched.window == 10  # never moved: the new layout's window holds


def test_restore_keeps_what_merged_meanwhile_and_re_bases_the_rest() -> None:
    queue = queue_of(2, 3, 4)
    for item, keys in zip(
        queue.items,
        [["nova 1,1"], ["nova 1,1", "nova 2,1"], ["nova 1,1", "nova 9,1", "nova 3,1"]],
        strict=True,
    ):
        item.tested_with = keys
    queue.restore_tested(lambda key: key == "nova 1,1")  # 1 merged; 9 failed and left
    assert walk(queue) == [4]
