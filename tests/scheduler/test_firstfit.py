"""The first-fit placeholder, kept as the benchmark's baseline, still does what it did."""

from gpufleet.scheduler.firstfit import schedule_first_fit
from tests.scheduler.builders import make_job, make_node, make_running, make_snapshot, placed


def test_first_fit_takes_the_first_node_and_lowest_gpus():
    nodes = [make_node("n1", 8), make_node("n2", 8)]
    running = [make_running(2, on="n1")]
    jobs = [make_job(4), make_job(4), make_job(1, gpu_model="h100")]
    d = schedule_first_fit(make_snapshot(nodes, pending=jobs, running=running), 0.0)
    got = placed(d)
    assert got[jobs[0].id][0].node == "n1" and got[jobs[0].id][0].gpus == (2, 3, 4, 5)
    assert got[jobs[1].id][0].node == "n2"
    assert d.reasons[jobs[2].id] == "NodeConstraint(gpu_model=h100 matches 0 nodes)"
