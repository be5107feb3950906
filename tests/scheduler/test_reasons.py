"""Every pending job gets a precise reason; the table below is what users read in `gpufleet jobs`."""

import pytest

from gpufleet.domain import NodeState
from gpufleet.scheduler import schedule
from gpufleet.scheduler.reasons import fmt_in
from tests.scheduler.builders import (
    make_booking, make_job, make_node, make_nodes, make_running, make_snapshot, make_tenant,
)

H = 3600


def lab():
    return [make_node("a1", 8, "a100", labels={"driver": "550.54"}),
            make_node("a2", 8, "a100", labels={"driver": "550.54"}, state=NodeState.DRAIN),
            make_node("h1", 8, "h100", labels={"driver": "560.35"})]


CASES = [
    ("no such model", dict(gpus=1, gpu_model="b200"), "NodeConstraint(gpu_model=b200 matches 0 up nodes)"),
    ("driver", dict(gpus=1, constraints={"driver": "535.104"}),
     "NodeConstraint(driver=535.104 matches 0 up nodes)"),
    ("combination", dict(gpus=1, gpu_model="a100", constraints={"driver": "560.35"}),
     "NodeConstraint(gpu_model=a100,driver=560.35 matches 0 up nodes)"),
    ("only on a drained node", dict(gpus=1, constraints={"vbios": "9"}), None),
    ("too big a rank", dict(gpus=16), "NodeConstraint(gpus=16 per node matches 0 up nodes, largest has 8)"),
    ("too many nodes", dict(gpus=8, nodes=3, gpu_model="a100"),
     "NodeConstraint(needs 3 nodes with 8 GPUs, 1 up)"),
    ("quota", dict(gpus=8, tenant="capped"), "QuotaExceeded(a100: 0/0)"),
    ("resources", dict(gpus=8, gpu_model="h100", time_limit_s=60),
     "Resources(needs 1x8 h100, largest free 4; reserved, starts in 1h)"),
    ("booking", dict(gpus=1, booking=3, tenant="t"), "WaitingForBooking(booking 3 starts in 41m)"),
]


@pytest.mark.parametrize("name, spec, reason", CASES, ids=[c[0] for c in CASES])
def test_reason_table(name, spec, reason):
    nodes = lab()
    if name == "only on a drained node":
        nodes[1].labels["vbios"] = "9"
        reason = "NodeConstraint(vbios=9 matches 0 up nodes, 1 not up)"
    running = [make_running(4, on="h1", time_limit_s=H), make_running(8, on="a1", time_limit_s=H)]
    tenants = [make_tenant("capped", {}, limit={"a100": 0, "h100": 0})]
    bookings = [make_booking(3, tenant="t", nodes=("h1",), start=41 * 60, end=2 * H)]
    job = make_job(**spec)
    d = schedule(make_snapshot(nodes, pending=[job], running=running, tenants=tenants, bookings=bookings), 0.0)
    assert d.reasons[job.id] == reason


def test_every_pending_job_has_a_reason_in_a_crowd():
    nodes = make_nodes(3, groups=2)
    jobs = [make_job(g, nodes=n) for g, n in [(8, 1), (4, 1), (8, 2), (2, 1), (8, 3), (1, 1)] * 5]
    d = schedule(make_snapshot(nodes, pending=jobs), 0.0)
    placed_ids = {p.job_id for p in d.placements}
    assert placed_ids.isdisjoint(d.reasons)
    assert placed_ids | set(d.reasons) == {j.id for j in jobs}
    assert all(d.reasons.values())


def test_identical_jobs_share_the_explanation_but_only_the_head_reserves():
    nodes = [make_node("n1", 8)]
    running = [make_running(8, on="n1", time_limit_s=H)]
    a, b = make_job(8), make_job(8)
    d = schedule(make_snapshot(nodes, pending=[a, b], running=running), 0.0)
    assert d.reasons[a.id] == "Resources(needs 1x8 a100, largest free 0; reserved, starts in 1h)"
    assert d.reasons[b.id] == "Resources(needs 1x8 a100, largest free 0)"


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (42, "42s"), (41 * 60, "41m"), (3599, "1h"), (2 * H + 5 * 60, "2h05m"), (3 * 86400 + 4 * H, "3d4h"),
])
def test_relative_times(seconds, text):
    assert fmt_in(seconds) == text
