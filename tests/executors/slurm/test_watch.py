"""EndWatch: Slurm's stand-in for a watch (executors/slurm/watch.py), on a stub of `live_ids`."""

from __future__ import annotations

import threading

from gpufleet.executors.base import Observation, Phase
from gpufleet.executors.slurm.watch import EndWatch


class Queue:
    def __init__(self, *ids: int):
        self.ids, self.calls = set(ids), 0

    def __call__(self) -> set[int]:
        self.calls += 1
        return set(self.ids)


def test_a_job_leaving_slurms_queue_wakes_the_listeners_once():
    q = Queue(11, 12)
    w = EndWatch(q, interval_s=0)
    woke = []
    w._listeners.append(lambda: woke.append(1))  # listen() without its thread (interval 0)
    w.add(11), w.add(12)
    assert w.look() is False and woke == []
    q.ids.discard(11)
    assert w.look() is True and woke == [1]
    assert w.look() is False and woke == [1]  # 11 is no longer watched


def test_nothing_watched_means_no_call_to_slurm():
    q = Queue()
    w = EndWatch(q, interval_s=0)
    assert w.look() is False and q.calls == 0


def test_polls_add_adopted_jobs_and_drop_ended_ones():
    q = Queue(21)
    w = EndWatch(q, interval_s=0)
    w.seen([Observation(1, Phase.RUNNING, handle="21"), Observation(2, Phase.SUCCEEDED, handle="22")])
    assert w._ids == {21}


def test_the_thread_wakes_a_listener_when_a_job_ends_and_stops_on_close():
    q = Queue(31)
    w = EndWatch(q, interval_s=0.01)
    woke = threading.Event()
    w.add(31)
    w.listen(woke.set)
    q.ids.clear()
    assert woke.wait(5)
    w.close()
    w._thread.join(2)
    assert not w._thread.is_alive()


def test_a_failing_look_does_not_end_the_thread():
    calls = []

    def flaky() -> set[int]:
        calls.append(1)
        raise RuntimeError("slurmctld away")

    w = EndWatch(flaky, interval_s=0.01)
    w.add(1)
    w.listen(lambda: None)
    w.close()  # the thread ends at its next wait; nothing raised out of it
    w._thread.join(2)
    assert not w._thread.is_alive()
