"""Clean-room prolog/epilog checks for perf runs, as health-check plugins (the `Check` shape).

Prolog (before the command, on every node of the run):
  stray_processes  no compute/graphics process on the GPUs (NVML process lists)
  persistence      persistence mode on
  clocks           clocks as the policy asks: `base` = default application clocks, `max` = max
                   clocks, `<MHz>` = locked SM clock; locked here, restored by `restore_clocks`
  temperature      every GPU below `max_temp_c` (default: slowdown threshold - 10 C)
  throttle         no throttle reason active (idle / application-clock setting / sync boost excepted)
  xid_ecc          no uncorrectable ECC error since boot, no pending remap; no XID/ECC finding of
                   the health loop since its last clean check (`recent` facts from the caller)
Epilog: `judge_run(samples, expected, findings)` over the samples taken during the run.
Every check returns a CheckResult with the reason; a FAIL refuses the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from gpufleet.domain.perf import PerfCheck, PerfPolicy, PerfSample
from gpufleet.health.nvml_checks import THROTTLE_NAMES, _optional, per_gpu, skipped
from gpufleet.health.types import CheckContext, CheckResult, Status

BENIGN_THROTTLE = frozenset({"idle", "applications_clocks", "sync_boost"})
CLOCK_TOLERANCE = 0.97  # a sample below 97% of the expected SM clock is a clock drop
DEFAULT_TEMP_MARGIN_C = 10


def throttle_reasons(nvml: Any, h: Any) -> list[str]:
    mask = _optional(nvml, lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)) or 0
    return sorted(n for attr, n in THROTTLE_NAMES.items() if mask & getattr(nvml, attr, 0))


@dataclass
class StrayProcessCheck:
    name: str = "stray_processes"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            procs = list(_optional(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h)) or [])
            procs += list(_optional(nvml, lambda: nvml.nvmlDeviceGetGraphicsRunningProcesses(h)) or [])
            pids = sorted({int(p.pid) for p in procs})
            problems = [(Status.FAIL, f"{len(pids)} other process(es) on the GPU (pid {', '.join(map(str, pids))})")] if pids else []
            return problems, {"pids": pids}

        return per_gpu(ctx, probe, "no other process on the GPUs")


@dataclass
class PersistenceOnCheck:
    name: str = "persistence"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            on = nvml.nvmlDeviceGetPersistenceMode(h) == nvml.NVML_FEATURE_ENABLED
            return ([] if on else [(Status.FAIL, "persistence mode off")]), {"persistence": on}

        return per_gpu(ctx, probe, "persistence mode on")


def expected_sm_mhz(nvml: Any, h: Any, policy: PerfPolicy) -> int | None:
    """The SM clock the policy asks for on this GPU (None: as_is, whatever the application clock is)."""
    sm = nvml.NVML_CLOCK_SM
    if policy.clocks == "base":
        return int(nvml.nvmlDeviceGetDefaultApplicationsClock(h, sm))
    if policy.clocks == "max":
        return int(nvml.nvmlDeviceGetMaxClockInfo(h, sm))
    if policy.clocks.isdigit():
        return int(policy.clocks)
    return None


@dataclass
class ClockCheck:
    """Locks clocks as asked (and remembers what to restore), then checks the SM clock."""

    policy: PerfPolicy = field(default_factory=PerfPolicy)
    name: str = "clocks"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            want = expected_sm_mhz(nvml, h, self.policy)
            if want is not None:
                nvml.nvmlDeviceSetGpuLockedClocks(h, want, want)
            reasons = throttle_reasons(nvml, h)
            now = int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))
            target = want or int(nvml.nvmlDeviceGetApplicationsClock(h, nvml.NVML_CLOCK_SM))
            facts = {"sm_mhz": now, "expected_sm_mhz": target, "locked": want is not None}
            if now < target * CLOCK_TOLERANCE and "idle" not in reasons:
                return [(Status.FAIL, f"SM clock {now} MHz, expected {target} MHz")], facts
            return [], facts

        return per_gpu(ctx, probe, f"clocks {self.policy.clocks}")


def restore_clocks(nvml: Any, policy: PerfPolicy) -> None:
    """Undo what ClockCheck locked (every GPU of the node)."""
    if policy.clocks == "as_is":
        return
    for i in range(nvml.nvmlDeviceGetCount()):
        try:
            nvml.nvmlDeviceResetGpuLockedClocks(nvml.nvmlDeviceGetHandleByIndex(i))
        except Exception:
            pass


@dataclass
class TemperatureCheck:
    max_temp_c: int | None = None
    name: str = "temperature"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            temp = int(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
            limit = self.max_temp_c
            if limit is None:
                slow = _optional(nvml, lambda: nvml.nvmlDeviceGetTemperatureThreshold(
                    h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))
                limit = (slow - DEFAULT_TEMP_MARGIN_C) if slow else None
            facts = {"temp_c": temp, "max_temp_c": limit}
            if limit is not None and temp >= limit:
                return [(Status.FAIL, f"{temp} C, perf runs start below {limit} C")], facts
            return [], facts

        return per_gpu(ctx, probe, "temperatures below threshold")


@dataclass
class ThrottleCheck:
    name: str = "throttle"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            active = [r for r in throttle_reasons(nvml, h) if r not in BENIGN_THROTTLE]
            return ([(Status.FAIL, "throttled by " + ", ".join(active))] if active else []), {"throttle": active}

        return per_gpu(ctx, probe, "no throttle reason active")


@dataclass
class XidEccCheck:
    """ECC state now, plus what the health loop found since its last clean check (`recent`)."""

    recent: Sequence[str] = ()  # "xid: GPU 3: XID 79 (...)" lines from health results
    name: str = "xid_ecc"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s

        def probe(nvml: Any, i: int, h: Any):
            vol = _optional(nvml, lambda: nvml.nvmlDeviceGetTotalEccErrors(
                h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)) or 0
            rows = _optional(nvml, lambda: nvml.nvmlDeviceGetRemappedRows(h))
            pending = bool(rows and rows[2])
            problems = []
            if vol:
                problems.append((Status.FAIL, f"{vol} uncorrectable ECC errors since boot"))
            if pending:
                problems.append((Status.FAIL, "row remap pending"))
            return problems, {"ecc_uncorrected_volatile": int(vol), "remap_pending": pending}

        result = per_gpu(ctx, probe, "no XID or ECC event")
        if self.recent:
            msg = "; ".join(self.recent)
            return CheckResult(Status.FAIL, msg if result.status is Status.OK else f"{result.message}; {msg}",
                               result.facts)
        return result


def prolog_checks(policy: PerfPolicy, recent: Sequence[str] = ()) -> list[Any]:
    """The prolog's plugins, in order (clocks is last but one: it locks them)."""
    return [StrayProcessCheck(), PersistenceOnCheck(), XidEccCheck(recent=tuple(recent)),
            TemperatureCheck(policy.max_temp_c), ClockCheck(policy), ThrottleCheck()]


def sample_gpus(nvml: Any, now: float) -> list[PerfSample]:
    """One reading of every GPU of the node: clocks, temperature, power, utilisation, throttling."""
    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        power = _safe(lambda: nvml.nvmlDeviceGetPowerUsage(h))
        util = _safe(lambda: nvml.nvmlDeviceGetUtilizationRates(h))
        out.append(PerfSample(
            at=now, gpu=i,
            sm_mhz=_safe(lambda: int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))),
            mem_mhz=_safe(lambda: int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM))),
            temp_c=_safe(lambda: int(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))),
            power_w=round(power / 1000.0, 1) if power is not None else None,
            util_pct=int(util.gpu) if util is not None else None,
            throttle=tuple(_safe(lambda: throttle_reasons(nvml, h), [])),
        ))
    return out


def _safe(call, default=None):
    try:
        return call()
    except Exception:
        return default


def summarise(samples: Iterable[PerfSample]) -> dict[str, Any]:
    """The run's conditions: count, per metric min/max/mean, throttle reasons seen."""
    samples = list(samples)
    out: dict[str, Any] = {"samples": len(samples)}
    for metric in ("sm_mhz", "mem_mhz", "temp_c", "power_w", "util_pct"):
        values = [getattr(s, metric) for s in samples if getattr(s, metric) is not None]
        if values:
            out[metric] = {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 2)}
    out["throttle"] = sorted({r for s in samples for r in s.throttle} - BENIGN_THROTTLE)
    return out


def judge_run(samples: Sequence[PerfSample], expected_sm: dict[int, int], findings: Sequence[str] = ()) -> list[PerfCheck]:
    """Epilog verdicts over the run's samples. `expected_sm`: GPU -> SM clock the prolog saw/locked;
    `findings`: XID/ECC lines the health loop recorded during the run, and the ECC delta."""
    throttled: dict[int, set[str]] = {}
    dropped: dict[int, int] = {}
    for s in samples:
        bad = set(s.throttle) - BENIGN_THROTTLE
        if bad:
            throttled.setdefault(s.gpu, set()).update(bad)
        want = expected_sm.get(s.gpu)
        if want and s.sm_mhz is not None and s.sm_mhz < want * CLOCK_TOLERANCE and "idle" not in s.throttle:
            dropped[s.gpu] = min(dropped.get(s.gpu, s.sm_mhz), s.sm_mhz)
    checks = [
        PerfCheck("throttle", not throttled, "; ".join(f"GPU {g}: {', '.join(sorted(r))}" for g, r in sorted(throttled.items()))),
        PerfCheck("clock_drop", not dropped, "; ".join(
            f"GPU {g}: SM clock fell to {m} MHz (expected {expected_sm[g]})" for g, m in sorted(dropped.items()))),
        PerfCheck("xid_ecc", not findings, "; ".join(findings)),
    ]
    return checks
