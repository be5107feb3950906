"""The perf prolog/epilog as one process inside an allocation (Slurm prolog/epilog, a pod's init
and post steps, a batch script): `gpufleet perf prolog|sample|epilog` call these with real NVML.

State between the steps is one JSON file (default $GPUFLEET_PERF_STATE or ./.gpufleet-perf.json):
{policy, started_at, expected_sm, prolog, samples}. Nothing here talks to the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpufleet.domain import Node
from gpufleet.domain.perf import PerfPolicy, PerfSample, perf_from_dict
from gpufleet.health.prolog import judge_run, prolog_checks, restore_clocks, sample_gpus, summarise
from gpufleet.health.types import CheckContext, Status


def run_prolog(nvml: Any, policy: PerfPolicy, now: float, node_name: str = "local") -> dict[str, Any]:
    """Every prolog check on this node (nvml initialised). Returns the state to keep; `ok` False
    when a check refused (clocks are then restored already)."""
    checks = []
    for check in prolog_checks(policy):
        try:
            r = check.run(CheckContext(node=Node(node_name), now=now, nvml=nvml))
            checks.append({"name": check.name, "ok": r.status is not Status.FAIL, "reason": r.message,
                           "facts": dict(r.facts)})
        except Exception as e:
            checks.append({"name": check.name, "ok": False, "reason": f"check crashed: {e}", "facts": {}})
    ok = all(c["ok"] for c in checks)
    expected = {}
    for c in checks:
        if c["name"] == "clocks":
            expected = {i: f.get("expected_sm_mhz") for i, f in (c["facts"].get("gpus") or {}).items()
                        if f.get("expected_sm_mhz")}
    if not ok:
        restore_clocks(nvml, policy)
    return {"ok": ok, "policy": policy.to_dict(), "started_at": now, "expected_sm": expected,
            "prolog": checks, "samples": []}


def take_sample(nvml: Any, state: dict[str, Any], now: float) -> None:
    state.setdefault("samples", []).extend(s.to_dict() for s in sample_gpus(nvml, now))


def run_epilog(nvml: Any, state: dict[str, Any], now: float, findings: list[str] | None = None) -> dict[str, Any]:
    """The last sample, the verdicts, clocks restored: {perf_valid, reason, epilog, conditions}."""
    take_sample(nvml, state, now)
    samples = [PerfSample.from_dict(s) for s in state.get("samples") or ()]
    expected = {int(k): int(v) for k, v in (state.get("expected_sm") or {}).items()}
    checks = judge_run(samples, expected, findings or [])
    restore_clocks(nvml, perf_from_dict(state.get("policy")) or PerfPolicy())
    bad = [c for c in checks if not c.ok]
    return {"perf_valid": not bad, "reason": "epilog " + "; ".join(f"{c.name}: {c.reason}" for c in bad) if bad else "",
            "epilog": [c.to_dict() for c in checks], "conditions": summarise(samples),
            "started_at": state.get("started_at"), "ended_at": now, "prolog": state.get("prolog")}


def state_path(given: str | None) -> Path:
    return Path(given or os.environ.get("GPUFLEET_PERF_STATE") or ".gpufleet-perf.json")


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
