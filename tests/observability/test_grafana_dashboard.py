"""The shipped Grafana dashboard only queries metrics the registry really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gpufleet.domain import Gpu, Job, JobSpec, Node
from gpufleet.observability import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "gpufleet.json"


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    return exprs


def exposed_names() -> set[str]:
    m = Metrics()
    m.update_fleet([Job(1, JobSpec(("x",)))], [Node("n", gpus=(Gpu(0, "a100"),))], now=0.0)
    m.observe_schedule_run("s", "ok")
    m.remediation_outcomes.labels("resumed").inc()
    m.remediation_steps.labels("drain", "ok").inc()
    m.health_checks.labels("xid", "ok").inc()
    m.health_status.labels("n", "xid").set(0)
    m.gpu_seconds.labels("t", "u", "a100").inc()
    m.add_busy("t", "u", "a100", 1.0)
    m.job_restarts.labels("t", "node_fault").inc()
    m.lost_gpu_hours.labels("t").inc()
    m.restart_seconds.labels("t").observe(1.0)
    return {s.name for fam in m.registry.collect() for s in fam.samples}


def test_every_metric_in_the_dashboard_exists():
    names = exposed_names()
    used = {n for e in dashboard_exprs() for n in re.findall(r"\bgpufleet_[a-z_]+", e)}
    assert used, "the dashboard queries nothing"
    assert used <= names, f"dashboard queries unknown metrics: {sorted(used - names)}"
    core = {"gpufleet_jobs", "gpufleet_queue_length", "gpufleet_oldest_pending_age_seconds", "gpufleet_gpus_total",
            "gpufleet_gpus_allocated", "gpufleet_gpus_healthy", "gpufleet_scheduling_cycle_seconds_bucket",
            "gpufleet_health_checks_total", "gpufleet_remediation_outcomes_total"}
    assert core <= used


def test_dashboard_shape():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "model", "node"}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
