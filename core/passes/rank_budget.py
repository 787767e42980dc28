"""Per-layer ranks that meet a parameter budget exactly.

The budget: the block linears keep ``1 - reduction`` of their weights,
rounded down to the lattice their costs lie on (a rank of an out x in layer
costs out + in weights, a layer left whole out * in; every cost here is a
multiple of ``g``, the gcd of the rank costs), so a sum of costs can equal
it. The target comes from shapes alone, so the size estimate knows it
before any weight is read.

How it is shared: every layer starts at rank 1; then ranks go, one at a
time, to the layer whose next singular value carries the most energy per
weight it costs (energies must be in one unit across layers: the estimated
loss each rank carries, core.passes.svd_llm). A layer at its last rank that
saves anything becomes whole when its next rank is bought (its tail comes
with it, nearly free). Ranks that no longer fit are skipped, and a last
exact fit exchanges a few ranks between layers of different costs (a
shortest combination of costs, found by breadth-first search), so the
weights kept equal the target.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

WHOLE = 0  # the rank of a layer left dense (any rank >= 1 is factored)
UNWHOLE_DEPTH = 4  # a whole layer may be factored again at its top rank or up to 3 below


@dataclass(frozen=True)
class Shape:
    name: str
    out_features: int
    in_features: int

    @property
    def step(self) -> int:  # weights one more rank costs
        return self.out_features + self.in_features

    @property
    def whole(self) -> int:
        return self.out_features * self.in_features

    @property
    def top(self) -> int:
        """The largest rank whose factors are smaller than the whole weight
        (0 when none is: the layer cannot be factored)."""
        return (self.whole - 1) // self.step


def kept_weights(shapes: list[Shape], ranks: dict[str, int]) -> int:
    return sum(s.whole if ranks[s.name] == WHOLE else ranks[s.name] * s.step for s in shapes)


def budget(shapes: list[Shape], reduction: float) -> tuple[int, int]:
    """(target weights kept, lattice step g) for factorable ``shapes``."""
    g = math.gcd(*(s.step for s in shapes))
    total = sum(s.whole for s in shapes)
    target = int((1.0 - reduction) * total) // g * g
    return max(target, sum(s.step for s in shapes)), g  # at least rank 1 each


def share_ranks(
    shapes: list[Shape], energies: dict[str, torch.Tensor] | None, reduction: float
) -> dict[str, int]:
    """Each layer's rank (WHOLE: left dense) so that the weights kept equal
    ``budget``'s target. ``energies``: each layer's squared singular values,
    descending, in one unit across layers; None shares by shapes alone (the
    size estimate: every singular value alike)."""
    shapes = [s for s in shapes if s.top >= 1]
    if not shapes:
        return {}
    target, g = budget(shapes, reduction)
    # A layer may be left whole only if that keeps the sum on the lattice.
    may_be_whole = {s.name: s.whole % g == 0 for s in shapes}
    ranks = {s.name: 1 for s in shapes}
    used = sum(s.step for s in shapes)
    candidates = []
    for order, s in enumerate(shapes):
        energy = None if energies is None else energies[s.name].double()
        for j in range(1, s.top + 1):  # j == top: the step to whole
            value = 1.0 if energy is None else float(energy[j])
            candidates.append((-value / s.step, order, j, s))
    candidates.sort(key=lambda c: c[:3])
    for _, _, _, s in candidates:
        rank = ranks[s.name]
        if rank == WHOLE:
            continue
        if rank < s.top:
            cost, new = s.step, rank + 1
        elif may_be_whole[s.name]:
            cost, new = s.whole - rank * s.step, WHOLE
        else:
            continue
        if used + cost <= target:
            ranks[s.name], used = new, used + cost
    _exact_fit(shapes, energies, ranks, target - used, g)
    return ranks


def _exact_fit(shapes, energies, ranks, gap: int, g: int) -> None:
    """Close ``gap`` (a multiple of g) with the fewest single moves: a rank
    more or less for a factored layer, or a layer at its last saving rank
    made whole or back; each move on the layer where it costs least."""
    if gap == 0:
        return
    kinds = {}  # (move, out, in, ranks below top) -> change in weights kept
    for s in shapes:
        rank, shape = ranks[s.name], (s.out_features, s.in_features)
        if rank != WHOLE and rank < s.top:
            kinds[("more", *shape, 0)] = s.step
        if rank != WHOLE and rank > 1:
            kinds[("fewer", *shape, 0)] = -s.step
        if rank == WHOLE:
            # Factored again at its top rank or a few below: when only whole
            # layers have the step that the gap needs (a tiny model's MLPs
            # all whole, the other layers' steps all even multiples of g),
            # this is the only way to reach it.
            for below in range(min(UNWHOLE_DEPTH, s.top)):
                kinds[("unwhole", *shape, below)] = (s.top - below) * s.step - s.whole
        elif rank == s.top and s.whole % g == 0:
            kinds[("whole", *shape, 0)] = s.whole - s.top * s.step
    path = _shortest_combination({k: v // g for k, v in kinds.items()}, gap // g)
    if path is None:
        raise ValueError("no exchange of ranks meets the parameter budget exactly")
    for move, out_f, in_f, below in path:
        same = [s for s in shapes if (s.out_features, s.in_features) == (out_f, in_f)]
        pick = _cheapest(move, same, energies, ranks)
        if pick is None:
            raise ValueError("no layer has room to meet the parameter budget exactly")
        rank = ranks[pick.name]
        ranks[pick.name] = {
            "more": rank + 1,
            "fewer": rank - 1,
            "unwhole": pick.top - below,
            "whole": WHOLE,
        }[move]


def _cheapest(move: str, shapes: list[Shape], energies, ranks) -> Shape | None:
    """The layer where ``move`` loses least (or gains most) energy."""

    def energy(s: Shape, start: int, stop: int | None = None) -> float:
        if energies is None:
            return float((stop or min(s.out_features, s.in_features)) - start)
        return float(energies[s.name][start:stop].sum())

    if move == "more":
        room = [s for s in shapes if ranks[s.name] != WHOLE and ranks[s.name] < s.top]
        return max(room, key=lambda s: energy(s, ranks[s.name], ranks[s.name] + 1), default=None)
    if move == "fewer":
        room = [s for s in shapes if ranks[s.name] != WHOLE and ranks[s.name] > 1]
        return min(room, key=lambda s: energy(s, ranks[s.name] - 1, ranks[s.name]), default=None)
    if move == "whole":
        room = [s for s in shapes if ranks[s.name] == s.top]
        return max(room, key=lambda s: energy(s, s.top), default=None)
    room = [s for s in shapes if ranks[s.name] == WHOLE]
    return min(room, key=lambda s: energy(s, s.top), default=None)


def _shortest_combination(moves: dict, goal: int, limit: int = 200_000):
    """The fewest ``moves`` (name -> change, repeats allowed) summing to
    ``goal``, by breadth-first search over partial sums within +-limit;
    None if there is none."""
    largest = max((abs(v) for v in moves.values()), default=0)
    bound = min(limit, abs(goal) + 2 * largest**2)
    came_from = {0: None}
    queue = deque([0])
    while queue:
        value = queue.popleft()
        if value == goal:
            path = []
            while came_from[value] is not None:
                value, move = came_from[value]
                path.append(move)
            return path
        for move, change in moves.items():
            following = value + change
            if change and abs(following) <= bound and following not in came_from:
                came_from[following] = (value, move)
                queue.append(following)
    return None
