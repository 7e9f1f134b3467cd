"""Placing a round's launches across providers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.pool.allocation import allocate


def test_split_follows_free_capacity() -> None:
    plan = allocate({"trusty": 60}, {"trusty": ["a", "b", "c"]}, {"a": 50, "b": 50, "c": 20})
    assert plan == {("trusty", "a"): 25, ("trusty", "b"): 25, ("trusty", "c"): 10}


def test_a_provider_with_no_room_gets_nothing_and_the_others_take_its_share() -> None:
    plan = allocate({"trusty": 30}, {"trusty": ["a", "b"]}, {"a": 0, "b": 40})
    assert plan == {("trusty", "b"): 30}


def test_labels_with_fewer_providers_are_placed_first() -> None:
    # 'bare-metal' can only go to 'a'; 'trusty' can go anywhere.
    plan = allocate(
        {"trusty": 10, "bare-metal": 4},
        {"trusty": ["a", "b"], "bare-metal": ["a"]},
        {"a": 4, "b": 10},
    )
    assert plan == {("bare-metal", "a"): 4, ("trusty", "b"): 10}


def test_short_capacity_gives_every_label_a_node_and_rotates_the_lead() -> None:
    demand = {"a": 5, "b": 5, "c": 5}
    providers = {label: ["p"] for label in demand}
    firsts = []
    for rotation in range(3):
        plan = allocate(demand, providers, {"p": 4}, rotation)
        assert {label for (label, _), n in plan.items() if n} == {"a", "b", "c"}
        firsts.append(max(plan, key=lambda k: (plan[k], -ord(k[0][0])))[0])
    # Over three rounds each label got the spare node once.
    assert sorted(firsts) == ["a", "b", "c"]


@settings(max_examples=300, deadline=None)
@given(
    demand=st.dictionaries(st.sampled_from("uvwxyz"), st.integers(-3, 60), max_size=6),
    free=st.dictionaries(st.sampled_from("ABCD"), st.integers(0, 40), min_size=1),
    serves=st.dictionaries(
        st.sampled_from("uvwxyz"), st.lists(st.sampled_from("ABCDE"), max_size=4)
    ),
    rotation=st.integers(0, 10),
)
def test_never_over_capacity_or_demand_and_nothing_left_unused(
    demand: dict[str, int],
    free: dict[str, int],
    serves: dict[str, list[str]],
    rotation: int,
) -> None:
    label_providers = {label: sorted(set(serves.get(label, []))) for label in demand}
    plan = allocate(demand, label_providers, free, rotation)
    for (label, provider), n in plan.items():
        assert n > 0 and provider in label_providers[label]
    for provider, cap in free.items():
        assert sum(n for (_, p), n in plan.items() if p == provider) <= cap
    for label, want in demand.items():
        placed = sum(n for (lb, _), n in plan.items() if lb == label)
        assert placed <= max(0, want)
        if placed < want:
            # Short only because every provider it could use is full.
            for provider in label_providers[label]:
                used = sum(n for (_, p), n in plan.items() if p == provider)
                assert used >= free.get(provider, 0)
