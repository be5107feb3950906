"""structlog configuration, the audit log, and the metrics on their own registry."""

from __future__ import annotations

import io
import json
import logging

import prometheus_client
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.domain import Allocation, Gpu, Job, JobSpec, JobState, Node, NodeState
from gpufleet.health.remediation import Phase, Remediation, StepRecord
from gpufleet.health.types import CheckRecord, NodeHealth, Status
from gpufleet.observability import Metrics, configure_logging, loop_context, loop_logger


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level, config = list(root.handlers), root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_when_not_a_tty_with_loop_keys_on_every_line():
    out = io.StringIO()
    assert configure_logging("auto", stream=out) is True
    log = loop_logger("launch")
    with loop_context(job_id=42, node="dgx1", tenant="vision"):
        log.info("launched", ranks=2)
    log.info("cycle done")
    first, second = lines(out)
    assert first["event"] == "launched" and first["loop"] == "launch" and first["ranks"] == 2
    assert (first["job_id"], first["node"], first["tenant"]) == (42, "dgx1", "vision")
    assert first["logger"] == "gpufleet.control.launch" and first["level"] == "info" and "timestamp" in first
    assert (second["job_id"], second["node"], second["tenant"]) == (None, None, None)


def test_stdlib_loggers_share_the_format_and_context():
    out = io.StringIO()
    configure_logging("json", stream=out)
    with loop_context(node="desk-001"):
        logging.getLogger("some.library").warning("port %d busy", 8765)
    (line,) = lines(out)
    assert line["event"] == "port 8765 busy" and line["node"] == "desk-001" and line["level"] == "warning"


def test_console_on_a_tty():
    out = Tty()
    assert configure_logging("auto", stream=out) is False
    loop_logger("health").info("node drained", node="dgx1")
    text = out.getvalue()
    assert "node drained" in text and "dgx1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def sample(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    body, ctype = metrics.render()
    assert ctype.startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def make_nodes() -> list[Node]:
    a = Node("dgx1", gpus=tuple(Gpu(i, "a100") for i in range(4)))
    b = Node("desk-001", gpus=(Gpu(0, "rtx4090"), Gpu(1, "rtx4090")), state=NodeState.DRAIN)
    return [a, b]


def make_jobs() -> list[Job]:
    run = Job(1, JobSpec(("train",), gpus=2, tenant="vision"), state=JobState.RUNNING,
              allocation=(Allocation("dgx1", (0, 1)),), submitted_at=10)
    p1 = Job(2, JobSpec(("x",), tenant="speech"), submitted_at=40)
    p2 = Job(3, JobSpec(("x",), tenant="speech"), submitted_at=70)
    done = Job(4, JobSpec(("x",), tenant="speech"), state=JobState.SUCCEEDED)
    return [run, p1, p2, done]


def test_fleet_metrics():
    m = Metrics()
    m.update_fleet(make_jobs(), make_nodes(), now=100.0, unhealthy=["dgx1"])
    s = sample(m)
    assert s[("gpufleet_jobs", (("state", "RUNNING"), ("tenant", "vision")))] == 1
    assert s[("gpufleet_jobs", (("state", "PENDING"), ("tenant", "speech")))] == 2
    assert ("gpufleet_jobs", (("state", "SUCCEEDED"), ("tenant", "speech"))) not in s
    assert s[("gpufleet_queue_length", ())] == 2
    assert s[("gpufleet_oldest_pending_age_seconds", ())] == 60
    dgx = (("model", "a100"), ("node", "dgx1"))
    desk = (("model", "rtx4090"), ("node", "desk-001"))
    assert s[("gpufleet_gpus_total", dgx)] == 4 and s[("gpufleet_gpus_allocated", dgx)] == 2
    assert s[("gpufleet_gpus_healthy", dgx)] == 0  # its last health run failed
    assert s[("gpufleet_gpus_healthy", desk)] == 0  # drained
    assert s[("gpufleet_nodes", (("state", "drain"),))] == 1
    m.update_fleet([], make_nodes()[:1], now=100.0)
    assert sample(m)[("gpufleet_gpus_healthy", dgx)] == 4


def test_cycle_health_remediation_and_schedule_metrics():
    m = Metrics()
    m.observe_cycle(0.003)
    m.observe_cycle(0.2)
    recs = (CheckRecord("dgx1", "xid", 0, Status.FAIL, "XID 79", {}, 0.01, "r"),
            CheckRecord("dgx1", "ecc", 0, Status.OK, "", {}, 0.01, "r"))
    m.observe_health(NodeHealth("dgx1", 0, "r", recs, True))
    rem = Remediation("dgx1", "xid", True, 3, started_at=5.0)
    rem.steps.append(StepRecord(1, Phase.DRAIN, True, "", 6.0))
    m.observe_remediation(rem)
    rem.steps.append(StepRecord(1, Phase.RUNBOOK, False, "", 7.0))
    rem.phase = Phase.ESCALATED
    m.observe_remediation(rem)
    m.observe_remediation(rem)  # repeated on_change: counted once
    m.observe_schedule_run("nightly", "failed: exit 3: red")
    s = sample(m)
    assert s[("gpufleet_scheduling_cycle_seconds_count", ())] == 2
    assert s[("gpufleet_scheduling_cycle_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[("gpufleet_health_checks_total", (("check", "xid"), ("status", "fail")))] == 1
    assert s[("gpufleet_health_check_status", (("check", "xid"), ("node", "dgx1")))] == 2
    assert s[("gpufleet_remediation_outcomes_total", (("outcome", "escalated"),))] == 1
    assert s[("gpufleet_remediation_steps_total", (("phase", "runbook"), ("result", "failed")))] == 1
    assert s[("gpufleet_schedule_runs_total", (("outcome", "failed"), ("schedule", "nightly")))] == 1


def test_dedicated_registry_not_the_global_one():
    a, b = Metrics(), Metrics()  # two servers in one process (tests) must not collide
    assert a.registry is not prometheus_client.REGISTRY
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(n.startswith("gpufleet_") for n in names)
    a.observe_cycle(1.0)
    assert sample(b)[("gpufleet_scheduling_cycle_seconds_count", ())] == 0
