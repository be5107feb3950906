"""Output progress as the heartbeat, on the REAL API server (issue 17): the newest log line's
timestamp of each rank pod comes through the pod log API (apiserver -> kubelet, timestamps=true,
tailLines=1). The ranks run on a fake kubelet of this checkout (`own_kubelet`) in exec mode."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from gpufleet.domain import Allocation
from gpufleet.executors.base import Phase

from .conftest import EXEC, eventually, job_of, wait_phase

pytestmark = pytest.mark.k8s

# rank 0 prints a step every 0.2 s for ~2 s, then hangs silently; rank 1 prints once and hangs
STEPS = ('if [ "$NODE_RANK" = 0 ]; then i=0; while [ $i -lt 10 ]; do echo "step $i"; i=$((i + 1)); sleep 0.2; done; '
         'else echo "rank 1 up"; fi; exec sleep 600')


def test_the_newest_output_line_of_any_rank_is_the_sign_of_life_and_stops_with_the_output(make_executor, own_kubelet):
    ex = make_executor(pod_annotations=EXEC)
    job = job_of([Allocation(own_kubelet[0], (0,)), Allocation(own_kubelet[1], (0,))], command=("sh", "-c", STEPS))
    job.spec = replace(job.spec, heartbeat_s=5)  # readings reused for 1 s
    t0 = time.time()
    ex.launch(job)
    try:
        wait_phase(ex, job, {Phase.RUNNING})
        seen = eventually(lambda: ex.last_sign_of_life(job), what="a first timestamped line")
        assert t0 - 1 <= seen <= time.time() + 1
        later = eventually(lambda: (t := ex.last_sign_of_life(job)) > seen + 0.5 and t, timeout=5,
                           what="the sign of life to move while rank 0 prints")
        time.sleep(3.0)  # rank 0 has printed its last step by now
        quiet = ex.last_sign_of_life(job)
        assert quiet >= later and time.time() - quiet > 0.5
        time.sleep(1.5)  # past the reuse period: read again, and nothing new was printed
        assert ex.last_sign_of_life(job) == quiet
        assert time.time() - quiet > 2.0  # what the control loop compares with --heartbeat
    finally:
        ex.cancel(job)
