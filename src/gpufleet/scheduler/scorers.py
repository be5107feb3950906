"""Scorers: rank candidate nodes for one rank, and pack a gang into few racks and switches.

Scores are tuples, lower is better, so they compose by plain tuple comparison.
"""

from __future__ import annotations

from typing import Sequence

Sig = tuple[int, ...]


def sig_score(sig: Sig, gpus: int) -> tuple[int, int, int, int]:
    """NVLink-group best fit for a node whose per-group free counts are `sig` (largest first).

    (0 if one group holds the rank else 1, groups used, free left in the chosen group, free left on
    the node): keep the rank in one group, take the fullest group that fits and the fullest node,
    so that whole groups and whole nodes stay free for big jobs.
    """
    total = sum(sig)
    fitting = [f for f in sig if f >= gpus]
    if fitting:
        best = min(fitting)
        return (0, 1, best - gpus, total - gpus)
    used = got = 0
    for f in sig:
        got += f
        used += 1
        if got >= gpus:
            break
    return (1, used, 0, total - gpus)


def pack_gang(cands: Sequence[tuple[tuple, int]], count: int, rack_of: Sequence[tuple[str, str]],
              topology: bool = True, prefer: frozenset[tuple[str, str]] = frozenset()) -> list[int] | None:
    """Choose `count` nodes out of candidates `(score, node)` sorted best first.

    1. one rack: of the racks that hold the gang, the one with the fewest candidates (best fit);
    2. one switch (network block): likewise, filling its racks largest first;
    3. else the fewest switches: largest switches first, their largest racks first.
    `prefer`: the (switch, rack)s of a restarted gang's previous attempt; in 1 and 2 a rack or
    switch among them goes first, then a rack of their switch (the replacement stays in its block).
    Without topology: the first `count` candidates.
    """
    if len(cands) < count:
        return None
    if not topology:
        return [i for _, i in cands[:count]]
    by_rack: dict[tuple[str, str], list[int]] = {}
    for _, i in cands:
        by_rack.setdefault(rack_of[i], []).append(i)
    near = {sw for sw, _ in prefer}
    racks = [(key not in prefer, key[0] not in near, len(v), key) for key, v in by_rack.items() if len(v) >= count]
    if racks:
        return by_rack[min(racks)[3]][:count]
    by_switch: dict[str, list[tuple[str, str]]] = {}
    sizes: dict[str, int] = {}
    for key, members in by_rack.items():
        by_switch.setdefault(key[0], []).append(key)
        sizes[key[0]] = sizes.get(key[0], 0) + len(members)
    switches = [(sw not in near, n, sw) for sw, n in sizes.items() if n >= count]
    if switches:
        order = [min(switches)[2]]
    else:
        order = sorted(sizes, key=lambda sw: (-sizes[sw], sw))
    chosen: list[int] = []
    for sw in order:
        for key in sorted(by_switch[sw], key=lambda k: (-len(by_rack[k]), k)):
            chosen.extend(by_rack[key][: count - len(chosen)])
            if len(chosen) == count:
                return chosen
    return None
