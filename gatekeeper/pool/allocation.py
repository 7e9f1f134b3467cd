"""How many nodes of each label to launch on each provider this round.

Pure arithmetic, so it can be checked exhaustively:

- labels served by fewer providers are placed first (they have nowhere else
  to go); labels served by as many take turns leading from round to round
  (``rotation``), so none is starved;
- when capacity is short, every label with demand gets one node before any
  gets a second;
- the rest of a label's demand is split across its providers in proportion
  to their free capacity (largest remainder), never above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def allocate(
    demand: Mapping[str, int],
    label_providers: Mapping[str, Sequence[str]],
    free: Mapping[str, int],
    rotation: int = 0,
) -> dict[tuple[str, str], int]:
    """``(label, provider) -> nodes to launch``; only positive entries.

    ``demand`` is per label, ``free`` per provider (capacity left under
    max-servers and quota; a backed-off provider has none).
    """
    left = {p: max(0, n) for p, n in free.items()}
    want = {label: n for label, n in demand.items() if n > 0}
    order = _order(want, label_providers, left, rotation)
    result: dict[tuple[str, str], int] = {}

    def give(label: str, provider: str, n: int) -> None:
        if n > 0:
            result[(label, provider)] = result.get((label, provider), 0) + n
            left[provider] -= n
            want[label] -= n

    # One each first, so a busy label cannot take everything from the others.
    for label in order:
        candidates = [p for p in label_providers.get(label, ()) if left.get(p, 0) > 0]
        if candidates:
            give(label, max(candidates, key=lambda p: left[p]), 1)
    for label in order:
        need = want[label]
        providers = [p for p in label_providers.get(label, ()) if left.get(p, 0) > 0]
        if need <= 0 or not providers:
            continue
        for provider, n in _split(need, {p: left[p] for p in providers}).items():
            give(label, provider, n)
    return result


def _order(
    want: Mapping[str, int],
    label_providers: Mapping[str, Sequence[str]],
    free: Mapping[str, int],
    rotation: int,
) -> list[str]:
    labels = sorted(want)
    if labels:
        shift = rotation % len(labels)
        labels = labels[shift:] + labels[:shift]
    # Stable sort: the rotation decides among labels with as many providers.
    return sorted(
        labels, key=lambda lb: sum(1 for p in label_providers.get(lb, ()) if free.get(p, 0) > 0)
    )


def _split(need: int, free: Mapping[str, int]) -> dict[str, int]:
    """``need`` across providers in proportion to ``free``, capped by it."""
    total = sum(free.values())
    if need >= total:
        return dict(free)
    shares = {p: need * f / total for p, f in free.items()}
    out = {p: min(free[p], int(s)) for p, s in shares.items()}
    rest = need - sum(out.values())
    by_remainder = sorted(free, key=lambda p: (-(shares[p] - int(shares[p])), -free[p], p))
    while rest > 0:
        progressed = False
        for p in by_remainder:
            if rest and out[p] < free[p]:
                out[p] += 1
                rest -= 1
                progressed = True
        if not progressed:
            break
    return out
