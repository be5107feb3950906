"""The `health:` section of the server settings, parsed into checks, NVML and remediation settings.

```yaml
health:
  interval: 5m              # how often the control loop runs the checks on every node
  nvml: auto                # auto (real NVML on this host's node) | fake (FakeNvmlFleet) | off
  checks:                   # per built-in check: options, `enabled: false`, `on_fail: requeue|finish`
    xid: {fail_codes: [48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140]}
    thermal: {warn_margin_c: 5, fail_on_hw_throttle: false}
    persistence: {required: false}
    nvlink: {expected_links: 18}
    disk: {paths: ["/", "/tmp"], warn_free_pct: 10, fail_free_pct: 5}
    memory: {fail_available_pct: 2}
  scripts:                  # Slurm/NHC-style executables
    - {name: nhc, path: /usr/sbin/nhc, args: [], timeout: 60s, on_fail: finish}
  dcgm: {enabled: auto, level: 1, timeout: 10m}   # auto: when `dcgmi` is on PATH
  remediation:
    enabled: true
    max_rounds: 3
    retry_delay: 0s
    playbook: deploy/ansible/remediate.yml
    ansible_inventory: null # default: every node is `ansible_host: <node address>`
    connection_local: false # true: every node is this host (single-host labs, tests)
    extravars: {gpufleet_marker_dir: /var/lib/gpufleet/remediation}
    runbook_timeout: 30m
    burn_in: {command: ["srun", "-w", "{node}", "--gres=gpu:8", "dcgmi", "diag", "-r", "3"], timeout: 1h}
  ticket: {kind: webhook, url: "https://hooks.example/gpufleet"}   # or jira / gitlab, see tickets.py
```
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gpufleet.domain import ValidationError, parse_duration
from gpufleet.health.nvml_checks import (
    DriverCheck, EccCheck, GpuInventoryCheck, NvlinkCheck, PersistenceCheck, ThermalCheck, XidCheck,
)
from gpufleet.health.script import DcgmDiagCheck, ScriptCheck
from gpufleet.health.system_checks import DiskCheck, MemoryCheck
from gpufleet.health.types import Check

BUILTIN: dict[str, Callable[..., Any]] = {
    "gpu_inventory": GpuInventoryCheck, "xid": XidCheck, "ecc": EccCheck, "thermal": ThermalCheck,
    "nvlink": NvlinkCheck, "persistence": PersistenceCheck, "driver": DriverCheck,
    "disk": DiskCheck, "memory": MemoryCheck,
}
OPTIONS: dict[str, set[str]] = {
    "gpu_inventory": set(), "xid": {"fail_codes", "max_events"}, "ecc": {"max_retired_pages"},
    "thermal": {"warn_margin_c", "max_temp_c", "fail_on_hw_throttle"}, "nvlink": {"expected_links"},
    "persistence": {"required"}, "driver": set(),
    "disk": {"paths", "warn_free_pct", "fail_free_pct", "min_free_gb"},
    "memory": {"warn_available_pct", "fail_available_pct", "compare_inventory", "total_tolerance_pct"},
}
NVML_MODES = ("auto", "fake", "off")


@dataclass
class RemediationSettings:
    enabled: bool = True
    max_rounds: int = 3
    retry_delay_s: float = 0.0
    playbook: str | None = None
    ansible_inventory: str | None = None
    runbook_timeout_s: float = 1800.0
    connection_local: bool = False  # every node is this host (single-host labs, tests)
    extravars: dict[str, Any] = field(default_factory=dict)
    burn_in: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthSettings:
    interval_s: float = 300.0
    nvml: str = "auto"
    checks: list[Check] = field(default_factory=list)
    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    ticket: dict[str, Any] = field(default_factory=dict)


def parse_health(data: Mapping[str, Any] | None, which: Callable[[str], str | None] = shutil.which) -> HealthSettings:
    data = dict(data or {})
    known = {"interval", "nvml", "checks", "scripts", "dcgm", "remediation", "ticket"}
    if bad := set(data) - known:
        raise ValidationError(f"health.{sorted(bad)[0]}", f"unknown setting (known: {', '.join(sorted(known))})")
    nvml = str(data.get("nvml", "auto"))
    if nvml not in NVML_MODES:
        raise ValidationError("health.nvml", f"one of {', '.join(NVML_MODES)}")
    checks = builtin_checks(data.get("checks") or {}) if nvml != "off" else system_only(data.get("checks") or {})
    checks += [script_check(s, f"health.scripts[{i}]") for i, s in enumerate(data.get("scripts") or [])]
    dcgm = dcgm_check(data.get("dcgm") or {}, which)
    if dcgm is not None:
        checks.append(dcgm)
    return HealthSettings(
        interval_s=float(parse_duration(data.get("interval", 300), "health.interval") or 300),
        nvml=nvml, checks=checks, remediation=remediation_settings(data.get("remediation") or {}),
        ticket=dict(data.get("ticket") or {}),
    )


def builtin_checks(cfg: Mapping[str, Any], names: tuple[str, ...] = tuple(BUILTIN)) -> list[Check]:
    if bad := set(cfg) - set(BUILTIN):
        raise ValidationError(f"health.checks.{sorted(bad)[0]}", f"unknown check (built in: {', '.join(BUILTIN)})")
    out: list[Check] = []
    for name in names:
        opts = dict(cfg.get(name) or {})
        if not opts.pop("enabled", True):
            continue
        on_fail = opts.pop("on_fail", None)
        if bad := set(opts) - OPTIONS[name]:
            raise ValidationError(f"health.checks.{name}.{sorted(bad)[0]}", "unknown option")
        if "fail_codes" in opts:
            opts["fail_codes"] = frozenset(int(c) for c in opts["fail_codes"])
        if "paths" in opts:
            opts["paths"] = tuple(str(p) for p in opts["paths"])
        check = BUILTIN[name](**opts)
        if on_fail is not None:
            check.requeue_on_fail = _on_fail(on_fail, f"health.checks.{name}.on_fail")
        out.append(check)
    return out


def system_only(cfg: Mapping[str, Any]) -> list[Check]:
    return builtin_checks({k: v for k, v in cfg.items() if k in ("disk", "memory")}, ("disk", "memory"))


def script_check(entry: Mapping[str, Any], where: str) -> ScriptCheck:
    if not isinstance(entry, Mapping) or not entry.get("path"):
        raise ValidationError(f"{where}.path", "every script check needs a path")
    path = str(entry["path"])
    return ScriptCheck(
        name=str(entry.get("name") or path.rsplit("/", 1)[-1]),
        argv=[path, *[str(a) for a in entry.get("args") or []]],
        timeout_s=float(parse_duration(entry.get("timeout", 60), f"{where}.timeout") or 60),
        requeue_on_fail=_on_fail(entry.get("on_fail", "finish"), f"{where}.on_fail"),
        warn_codes=frozenset(int(c) for c in entry.get("warn_codes") or ()),
        env={str(k): str(v) for k, v in (entry.get("env") or {}).items()},
    )


def dcgm_check(cfg: Mapping[str, Any], which: Callable[[str], str | None]) -> DcgmDiagCheck | None:
    enabled = cfg.get("enabled", "auto")
    binary = str(cfg.get("binary", "dcgmi"))
    if enabled is False or (enabled == "auto" and which(binary) is None):
        return None
    return DcgmDiagCheck(level=int(cfg.get("level", 1)), binary=binary,
                         timeout_s=float(parse_duration(cfg.get("timeout", 600), "health.dcgm.timeout") or 600))


def remediation_settings(cfg: Mapping[str, Any]) -> RemediationSettings:
    max_rounds = int(cfg.get("max_rounds", 3))
    if max_rounds < 1:
        raise ValidationError("health.remediation.max_rounds", "must be >= 1")
    return RemediationSettings(
        enabled=bool(cfg.get("enabled", True)), max_rounds=max_rounds,
        retry_delay_s=float(parse_duration(cfg.get("retry_delay") or None, "health.remediation.retry_delay") or 0),
        playbook=cfg.get("playbook"), ansible_inventory=cfg.get("ansible_inventory"),
        runbook_timeout_s=float(parse_duration(cfg.get("runbook_timeout", 1800),
                                               "health.remediation.runbook_timeout") or 1800),
        connection_local=bool(cfg.get("connection_local", False)),
        extravars=dict(cfg.get("extravars") or {}),
        burn_in=dict(cfg.get("burn_in") or {}),
    )


def _on_fail(value: Any, where: str) -> bool:
    if value not in ("requeue", "finish"):
        raise ValidationError(where, "requeue (running jobs go back to the queue) or finish (left to finish)")
    return value == "requeue"
