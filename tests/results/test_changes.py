from __future__ import annotations

import random

from gpufleet.results.analysis import regressions
from gpufleet.results.changes import change_points, guard
from tests.results.builders import stepped


def test_a_five_percent_drop_at_two_percent_cv_is_found_where_it_happened():
    rs = stepped(300, change_at=200, step=-0.05, cv=0.02, seed=1)
    [g] = regressions(rs)
    assert g.direction == "regression" and abs(g.first.commit[1:] and int(g.first.commit[1:]) - 200) <= 2
    assert -6.5 < g.change_pct < -3.5 and g.confidence > 0.999 and g.open
    assert g.cause.cause == "software"  # every node moved
    assert g.first.job_id == int(g.first.commit[1:]) + 1


def test_noise_alone_is_not_a_change():
    for seed in range(5):
        assert regressions(stepped(300, None, 0.0, cv=0.02, seed=seed)) == []


def test_lower_is_better_flips_the_direction():
    rs = stepped(200, change_at=100, step=-0.10, cv=0.01, seed=2)
    for r in rs:
        r.higher_is_better = False
    [g] = regressions(rs)
    assert g.direction == "improvement"


def test_invalid_runs_never_enter_detection():
    rs = stepped(200, change_at=150, step=-0.20, cv=0.01, seed=3)
    for r in rs[150:]:
        r.valid = False  # throttled runs: slow, but not the software's fault
    assert regressions(rs) == []


def test_since_keeps_changes_whose_first_result_is_after_it():
    rs = stepped(300, change_at=100, step=-0.10, cv=0.01, seed=4)
    assert len(regressions(rs, since=rs[90].at)) == 1
    assert regressions(rs, since=rs[150].at) == []


def test_too_few_points():
    assert change_points([1.0, 2.0, 3.0]) == []


def test_guard_flags_one_new_result_far_outside_the_window():
    rng = random.Random(0)
    window = [rng.gauss(100, 1) for _ in range(30)]
    hit = guard(window, 90.0)
    assert hit is not None and hit.regression and hit.change_pct < -8
    assert guard(window, 99.0) is None
    assert guard(window[:3], 50.0) is None  # too little history
    assert guard(window, 110.0).regression is False


def test_the_newest_result_alone_is_reported_by_the_guard():
    rs = stepped(120, None, 0.0, cv=0.01, seed=5)
    rs[-1].value *= 0.85
    [g] = regressions(rs)
    assert g.method == "guard" and g.direction == "regression" and g.first is rs[-1]


def test_a_spike_is_not_a_change_and_a_step_survives_despiking():
    from gpufleet.results.changes import despiked

    rng = random.Random(7)
    v = [rng.gauss(100, 1) for _ in range(100)]
    v[40] = 140.0
    v[41] = 60.0
    assert max(despiked(v)) < 105 and min(despiked(v)) > 95
    step = [100.0 + rng.gauss(0, 1) for _ in range(50)] + [90.0 + rng.gauss(0, 1) for _ in range(4)]
    assert list(despiked(step)[-4:]) == step[-4:]  # a new level of 4 results is kept as it is
    rs = stepped(200, None, 0.0, cv=0.01, seed=8)
    rs[100].value *= 1.4
    rs[101].value *= 1.4
    assert regressions(rs) == []


def test_the_pre_test_sends_only_possible_changes_to_e_divisive():
    from gpufleet.results.changes import change_regions

    rng = random.Random(3)
    steady = [rng.gauss(100, 2) for _ in range(500)]
    assert change_regions(steady) == []
    stepped_v = steady[:300] + [v * 0.95 for v in steady[300:]]
    [(lo, hi)] = change_regions(stepped_v)
    assert lo <= 300 < hi and hi - lo < 300
    assert change_regions(steady[:-4] + [90.0] * 4)  # a short newest level is looked at


def test_a_slow_node_in_the_mix_is_no_change():
    # every 8th run on a node 12 % slower, at 1 % noise: no regression, it is the outlier report's
    rs = stepped(400, None, 0.0, cv=0.01, seed=9, nodes=8, slow={"n5": 0.88})
    assert regressions(rs) == []


def test_detection_of_a_new_level_within_five_results():
    rs = stepped(200, change_at=195, step=-0.10, cv=0.01, seed=10)
    found = regressions(rs)
    assert found and all(g.direction == "regression" for g in found)
    assert any(abs(rs.index(g.first) - 195) <= 1 for g in found if g.method == "e-divisive")


def test_an_excursion_that_came_back_is_no_change():
    rs = stepped(300, None, 0.0, cv=0.01, seed=11)
    for r in rs[150:156]:
        r.value *= 0.9  # six bad results, then back
    assert [g for g in regressions(rs) if g.method == "e-divisive"] == []
