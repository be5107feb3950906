import itertools

import pytest

from gpufleet.domain import (
    JOB_TRANSITIONS, NODE_TRANSITIONS, Allocation, IllegalTransition, Job, JobSpec, JobState, Node,
    NodeState, transition,
)


def make_job(state: JobState) -> Job:
    job = Job(id=7, spec=JobSpec(command=("true",), gpus=2), state=state, submitted_at=1.0)
    if state is not JobState.PENDING:
        job.allocation = (Allocation("n1", (0, 1)),)
        job.started_at = 10.0
    return job


ALL_JOB_EDGES = list(itertools.product(JobState, JobState))


@pytest.mark.parametrize("old,new", ALL_JOB_EDGES, ids=[f"{a.value}->{b.value}" for a, b in ALL_JOB_EDGES])
def test_every_job_edge_is_allowed_exactly_when_in_the_table(old, new):
    job = make_job(old)
    if new in JOB_TRANSITIONS[old]:
        change = transition(job, new, "why", 100.0)
        assert job.state is new and job.reason == "why"
        assert (change.old, change.new, change.at, change.key) == (old.value, new.value, 100.0, "7")
    else:
        with pytest.raises(IllegalTransition):
            transition(job, new, "why", 100.0)
        assert job.state is old


def test_running_stamps_start_and_terminal_stamps_end():
    job = make_job(JobState.PENDING)
    transition(job, JobState.RUNNING, "placed", 5.0)
    assert job.started_at == 5.0 and job.ended_at is None
    transition(job, JobState.SUCCEEDED, "exited with 0", 9.0)
    assert job.ended_at == 9.0
    assert job.state.terminal


def test_requeue_returns_gpus_and_remembers_attained_service():
    job = make_job(JobState.RUNNING)  # 2 GPUs since t=10
    transition(job, JobState.PENDING, "Preempted", 20.0)
    assert job.allocation == () and job.handle is None and job.started_at is None
    assert job.attained_gpu_s == pytest.approx(20.0)
    assert job.restarts == 1


def test_changes_into_and_out_of_running_name_their_attempt():
    job = make_job(JobState.PENDING)
    assert transition(job, JobState.RUNNING, "placed", 1.0).attempt == 1
    assert transition(job, JobState.PENDING, "Requeued", 2.0).attempt == 1  # the run that ended
    assert job.attempt == 2  # the next run
    assert transition(job, JobState.RUNNING, "placed", 3.0).attempt == 2
    assert transition(job, JobState.SUCCEEDED, "exited with 0", 4.0).attempt == 2
    assert transition(make_job(JobState.PENDING), JobState.CANCELLED, "by alice", 1.0).attempt is None


ALL_NODE_EDGES = list(itertools.product(NodeState, NodeState))


@pytest.mark.parametrize("old,new", ALL_NODE_EDGES, ids=[f"{a.value}->{b.value}" for a, b in ALL_NODE_EDGES])
def test_every_node_edge(old, new):
    node = Node("n1", state=old, reason="r0")
    if new is old or new in NODE_TRANSITIONS[old]:
        change = transition(node, new, "because", 3.0)
        assert node.state is new
        assert change.kind == "node" and change.key == "n1"
        if new is NodeState.UP and old is not NodeState.UP:
            assert node.reason == ""
        elif new is not old:
            assert node.reason == "because"
    else:
        with pytest.raises(IllegalTransition):
            transition(node, new, "because", 3.0)


def test_terminal_states_have_no_way_out():
    for s in JobState:
        assert (JOB_TRANSITIONS[s] == frozenset()) == s.terminal
