"""End to end on the example inventory, fake NVML, REAL ansible-runner (connection: local),
a real burn-in process, the real scheduler, and a real local HTTP receiver for the ticket."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from gpufleet.domain import Job, JobSpec, NodeState, transition
from gpufleet.health.burnin import CommandBurnIn
from gpufleet.health.cycle import HealthCycle, RemediationWorkers
from gpufleet.health.nvml_checks import nvml_checks
from gpufleet.health.remediation import Remediation, RemediationHooks, Remediator
from gpufleet.health.runbook import AnsibleRunbook
from gpufleet.health.runner import HealthRunner
from gpufleet.health.tickets import WebhookTicketer
from gpufleet.health.types import NodeHealth, Status
from gpufleet.scheduler import schedule
from gpufleet.scheduler.types import Snapshot
from tests.health.conftest import ROOT
from tests.health.receiver import Receiver

pytestmark = pytest.mark.e2e
PLAYBOOK = ROOT / "deploy" / "ansible" / "remediate.yml"


class Lab:
    """The control loop's side, in memory: node states, stored results and remediations."""

    def __init__(self, nodes, fleet, tmp: Path, ticket_url: str | None, max_rounds: int = 2):
        self.nodes = nodes
        self.fleet = fleet
        self.results: list[NodeHealth] = []
        self.remediations: dict[str, Remediation] = {}
        self.drains: list[tuple[str, str, bool]] = []
        self.runner = HealthRunner(nvml_checks(), fleet)
        self.markers = tmp / "markers"
        self.markers.mkdir()
        hooks = RemediationHooks(
            drain=self.drain, resume=self.resume,
            runbook=AnsibleRunbook(str(PLAYBOOK), connection_local=True, timeout_s=120,
                                   extravars={"gpufleet_marker_dir": str(self.markers)},
                                   artifacts_dir=str(tmp / "ansible")),
            burn_in=CommandBurnIn((sys.executable, "-c", "import os; print('burn-in on', os.environ['GPUFLEET_NODE'])")),
            recheck=lambda name: self.runner.run(self.nodes[name]),
            ticketer=WebhookTicketer(ticket_url) if ticket_url else None,
        )
        self.remediator = Remediator(hooks, max_rounds=max_rounds,
                                     on_change=lambda rem: self.remediations.__setitem__(rem.node, rem))
        self.workers = RemediationWorkers(self.remediator, poll_s=0.05)
        self.cycle = HealthCycle(self.runner, self.remediator, nodes=lambda: self.nodes.values(),
                                 save_results=self.results.append, active=self.active, workers=self.workers)

    def active(self, node: str) -> Remediation | None:
        rem = self.remediations.get(node)
        return rem if rem is not None and not rem.done else None

    def drain(self, node: str, reason: str, requeue: bool) -> None:
        self.drains.append((node, reason, requeue))
        transition(self.nodes[node], NodeState.DRAIN, reason, time.time())

    def resume(self, node: str) -> None:
        transition(self.nodes[node], NodeState.UP, "", time.time())

    def place(self, spec: JobSpec) -> list[str]:
        snap = Snapshot(nodes=tuple(self.nodes.values()), running=(), pending=(Job(1, spec),))
        return [a.node for p in schedule(snap, time.time()).placements for a in p.allocation]


def test_xid_drains_runs_playbook_and_burn_in_then_resumes(lab_nodes, fleet, tmp_path):
    lab = Lab(lab_nodes, fleet, tmp_path, ticket_url=None)
    assert all(h.status is Status.OK for h in lab.cycle.tick())  # arms the XID watchers
    a100_job = JobSpec(command=("train",), gpus=1, gpu_model="a100")
    assert lab.place(a100_job) == ["dgx1"]

    fleet.raise_xid("dgx1", gpu=3, xid=79)
    lab.cycle.tick()  # ONE check interval
    node, reason, requeue = lab.drains[0]
    assert node == "dgx1" and requeue is True
    assert reason == "health: xid: GPU 3: XID 79 (GPU has fallen off the bus)"
    lab.workers.wait(timeout=120)

    rem = lab.remediations["dgx1"]
    assert rem.outcome == "resumed", rem.to_dict()
    assert [s.phase.value for s in rem.steps] == ["drain", "wait_idle", "runbook", "burn_in", "recheck", "resume"]
    marker = lab.markers / "dgx1.round1"
    assert marker.read_text().startswith("node=dgx1 round=1 reason=health: xid: GPU 3: XID 79")
    assert "burn-in on dgx1" in rem.steps[3].message
    assert lab_nodes["dgx1"].state is NodeState.UP
    assert lab.place(a100_job) == ["dgx1"]
    assert [h.node for h in lab.results if h.status is Status.FAIL] == ["dgx1"]
    lab.workers.close()


def test_drained_node_gets_no_new_job(lab_nodes, fleet, tmp_path):
    lab = Lab(lab_nodes, fleet, tmp_path, ticket_url=None)
    lab.runner.run(lab_nodes["dgx1"])
    fleet.raise_xid("dgx1", gpu=0, xid=48)
    health = lab.runner.run(lab_nodes["dgx1"])
    rem = lab.remediator.start("dgx1", health)
    lab.remediator.step(rem)  # the drain step only
    assert lab_nodes["dgx1"].state is NodeState.DRAIN
    assert lab.place(JobSpec(command=("train",), gpus=1, gpu_model="a100")) == []
    assert lab.place(JobSpec(command=("train",), gpus=1)) != ["dgx1"]


def test_persistent_fault_stays_drained_and_ticket_reaches_receiver(lab_nodes, fleet, tmp_path):
    with Receiver(routes={("POST", "/tickets"): lambda req: (201, {"id": "OPS-7", "url": "http://t/OPS-7"})}) as rx:
        lab = Lab(lab_nodes, fleet, tmp_path, ticket_url=f"{rx.url}/tickets", max_rounds=2)
        lab.cycle.tick()
        fleet.lose_gpu("desk-001", 1)
        lab.cycle.tick()
        lab.workers.wait(timeout=180)
        rem = lab.remediations["desk-001"]
        assert rem.outcome == "escalated", rem.to_dict()
        assert lab_nodes["desk-001"].state is NodeState.DRAIN
        assert (lab.markers / "desk-001.round1").exists() and (lab.markers / "desk-001.round2").exists()
        (req,) = [r for r in rx.requests if r.path == "/tickets"]
        assert req.method == "POST" and req.headers["idempotency-key"] == rem.dedupe_key
        assert req.body["kind"] == "gpufleet.node_unhealthy" and req.body["node"] == "desk-001"
        assert req.body["reason"] == "health: gpu_inventory: expected 2 GPUs, found 1; missing 1x rtx4090"
        assert req.body["rounds"] == 2
        assert rem.ticket.id == "OPS-7" and rem.ticket.url == "http://t/OPS-7"
    lab.cycle.tick()  # later intervals leave the escalated node drained
    assert lab_nodes["desk-001"].state is NodeState.DRAIN
    assert lab.remediations["desk-001"] is rem
    lab.workers.close()


def test_failing_playbook_fails_the_round(lab_nodes, fleet, tmp_path):
    runbook = AnsibleRunbook(str(PLAYBOOK), connection_local=True, timeout_s=120,
                             extravars={"gpufleet_marker_dir": str(tmp_path / "no" / "such" / "dir")},
                             artifacts_dir=str(tmp_path / "ansible"))
    result = runbook("desk-002", "health: test", 1)
    assert result.ok is False
    assert "task 'Record this attempt" in result.message
    assert result.facts["status"] == "failed"
