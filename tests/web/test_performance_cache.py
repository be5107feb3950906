"""The Performance page's view cache: a hit at the same version is served; after new results the
old view is served (stale_ok) while the new one is made in the background, never twice at once."""

from __future__ import annotations

import threading

from gpufleet.web.performance import _Cache


def test_same_version_is_a_hit_and_a_new_version_recomputes():
    cache, made = _Cache(), []
    assert cache.get(("t", "x"), 1, lambda: made.append(1) or "v1") == "v1"
    assert cache.get(("t", "x"), 1, lambda: made.append(2) or "again") == "v1"
    assert cache.get(("t", "x"), 2, lambda: made.append(3) or "v2") == "v2"
    assert made == [1, 3]


def test_stale_view_is_served_while_the_new_one_is_made_once():
    cache = _Cache()
    cache.get(("t", "out"), 1, lambda: "old")
    release, calls = threading.Event(), []

    def slow():
        calls.append(1)
        release.wait(10)
        return "new"

    assert cache.get(("t", "out"), 2, slow, stale_ok=True) == "old"
    assert cache.get(("t", "out"), 2, slow, stale_ok=True) == "old"  # no second recompute
    release.set()
    for _ in range(200):
        if cache.get(("t", "out"), 2, lambda: "unexpected") == "new":
            break
        threading.Event().wait(0.01)
    assert cache.get(("t", "out"), 2, lambda: "unexpected") == "new" and calls == [1]
