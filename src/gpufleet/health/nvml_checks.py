"""Built-in checks through NVML (nvidia-ml-py). `ctx.nvml` is pynvml or the fake: one code path.

Every check walks the GPUs NVML enumerates, collects per-GPU problems and facts, and returns the
worst status with the problems as its message ("GPU 3: XID 79 (GPU has fallen off the bus)").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gpufleet.domain.node import normalise_model
from gpufleet.health.types import CheckContext, CheckResult, Status, worst

Problem = tuple[Status, str]
Probe = Callable[[Any, int, Any], tuple[list[Problem], dict[str, Any]]]

# XIDs that mean the hardware (not the application) is in trouble: the node must be drained.
# From NVIDIA's "XID Errors" table; the rest (13, 31, 43, 45, ...) are usually caused by jobs.
FAIL_XIDS: dict[int, str] = {
    48: "double-bit ECC error", 61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt", 63: "ECC page retirement or row remap recording event",
    64: "ECC page retirement or row remap recording failure", 74: "NVLink error",
    79: "GPU has fallen off the bus", 92: "high single-bit ECC error rate",
    94: "contained ECC error", 95: "uncontained ECC error", 119: "GSP RPC timeout",
    120: "GSP error", 140: "unrecovered ECC error",
}
WARN_XIDS: dict[int, str] = {
    13: "graphics engine exception", 31: "GPU memory page fault", 43: "GPU stopped processing",
    45: "preemptive cleanup", 68: "video processor exception",
}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_code(nvml: Any, err: BaseException) -> int | None:
    return getattr(err, "value", None) if isinstance(err, nvml.NVMLError) else None


def devices(nvml: Any) -> list[tuple[int, Any]]:
    return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]


def skipped(ctx: CheckContext) -> CheckResult | None:
    """The result for a check that cannot look (no NVML), or None when NVML is there."""
    if ctx.nvml is not None:
        return None
    return CheckResult.ok(f"skipped: {ctx.nvml_error or 'NVML not configured'}", skipped=True)


def per_gpu(ctx: CheckContext, probe: Probe, ok_message: str) -> CheckResult:
    """Run `probe(nvml, index, handle)` on every GPU; combine problems and facts."""
    nvml = ctx.nvml
    problems: list[Problem] = []
    facts: dict[str, Any] = {}
    for i, handle in devices(nvml):
        try:
            found, gpu_facts = probe(nvml, i, handle)
        except nvml.NVMLError as e:
            code = nvml_code(nvml, e)
            if code == nvml.NVML_ERROR_NOT_SUPPORTED:
                facts[str(i)] = {"supported": False}
                continue
            status = Status.FAIL if code == nvml.NVML_ERROR_GPU_IS_LOST else Status.WARN
            found, gpu_facts = [(status, f"NVML error: {e}")], {"error": str(e)}
        facts[str(i)] = gpu_facts
        problems.extend((s, f"GPU {i}: {m}") for s, m in found)
    return combine(problems, {"gpus": facts}, ok_message)


def combine(problems: Iterable[Problem], facts: dict[str, Any], ok_message: str) -> CheckResult:
    problems = [p for p in problems if p[0] is not Status.OK]
    if not problems:
        return CheckResult(Status.OK, ok_message, facts)
    status = worst(s for s, _ in problems)
    ordered = [m for s, m in problems if s is status] + [m for s, m in problems if s is not status]
    return CheckResult(status, "; ".join(ordered), facts)


@dataclass
class GpuInventoryCheck:
    """GPU count and models match the node's inventory entry."""

    name: str = "gpu_inventory"
    requeue_on_fail: bool = True

    def run(self, ctx: CheckContext) -> CheckResult:
        expected = Counter(g.model for g in ctx.node.gpus)
        if ctx.nvml is None:
            if ctx.nvml_error and expected:
                return CheckResult.fail(f"NVML unavailable: {ctx.nvml_error}",
                                        expected=sum(expected.values()))
            return skipped(ctx)  # type: ignore[return-value]
        found_list = [normalise_model(text(ctx.nvml.nvmlDeviceGetName(h))) for _, h in devices(ctx.nvml)]
        found = Counter(found_list)
        facts = {"expected_count": sum(expected.values()), "found_count": len(found_list),
                 "expected_models": dict(expected), "found_models": dict(found)}
        if found == expected:
            return CheckResult(Status.OK, f"{len(found_list)} GPUs as expected", facts)
        missing = expected - found
        extra = found - expected
        parts = [f"expected {facts['expected_count']} GPUs, found {len(found_list)}"]
        if missing:
            parts.append("missing " + ", ".join(f"{n}x {m}" for m, n in sorted(missing.items())))
        if extra:
            parts.append("unexpected " + ", ".join(f"{n}x {m}" for m, n in sorted(extra.items())))
        return CheckResult(Status.FAIL, "; ".join(parts), facts)


@dataclass
class _XidWatch:
    event_set: Any
    registered: set[int] = field(default_factory=set)


@dataclass
class XidCheck:
    """XID errors since the last check, from NVML critical-XID events.

    The first run on a node arms the watcher (creates an event set and registers every GPU); XIDs
    that happened before that are not seen (NVML has no history). Later runs drain the queue.
    """

    name: str = "xid"
    requeue_on_fail: bool = True
    fail_codes: frozenset[int] = frozenset(FAIL_XIDS)
    max_events: int = 1000
    _watches: dict[str, _XidWatch] = field(default_factory=dict, repr=False)

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        nvml = ctx.nvml
        watch = self._watches.get(ctx.node.name)
        if watch is None:
            watch = self._watches[ctx.node.name] = _XidWatch(nvml.nvmlEventSetCreate())
        armed = self._register(nvml, watch)
        events = self._drain(nvml, watch)
        problems = [self._classify(gpu, xid) for gpu, xid in events]
        facts = {"events": [{"gpu": g, "xid": x} for g, x in events], "watched_gpus": sorted(watch.registered)}
        if armed and not events:
            return CheckResult(Status.OK, f"watching {len(watch.registered)} GPUs for XID events", facts)
        return combine(problems, facts, "no XID events since last check")

    def forget(self, node: str, nvml: Any = None) -> None:
        """Drop a node's watcher (its NVML session was closed)."""
        watch = self._watches.pop(node, None)
        if watch is not None and nvml is not None:
            try:
                nvml.nvmlEventSetFree(watch.event_set)
            except Exception:
                pass

    @staticmethod
    def _register(nvml: Any, watch: _XidWatch) -> int:
        new = 0
        for i, handle in devices(nvml):
            if i in watch.registered:
                continue
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, watch.event_set)
            except nvml.NVMLError:
                continue  # e.g. not supported on this board: nothing to watch there
            watch.registered.add(i)
            new += 1
        return new

    def _drain(self, nvml: Any, watch: _XidWatch) -> list[tuple[int, int]]:
        events: list[tuple[int, int]] = []
        for _ in range(self.max_events):
            try:
                data = nvml.nvmlEventSetWait_v2(watch.event_set, 0)
            except nvml.NVMLError as e:
                if nvml_code(nvml, e) == nvml.NVML_ERROR_TIMEOUT:
                    break
                raise
            if not data.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                gpu = int(nvml.nvmlDeviceGetIndex(data.device))
            except nvml.NVMLError:
                gpu = -1  # the GPU is gone (XID 79): index unknown
            events.append((gpu, int(data.eventData)))
        return events

    def _classify(self, gpu: int, xid: int) -> Problem:
        where = f"GPU {gpu}" if gpu >= 0 else "a lost GPU"
        what = FAIL_XIDS.get(xid) or WARN_XIDS.get(xid) or "see NVIDIA XID table"
        status = Status.FAIL if xid in self.fail_codes else Status.WARN
        return status, f"{where}: XID {xid} ({what})"


@dataclass
class EccCheck:
    """Uncorrectable ECC errors since boot, remapped rows (Ampere+) or retired pages (older)."""

    name: str = "ecc"
    requeue_on_fail: bool = True
    max_retired_pages: int = 60

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        return per_gpu(ctx, self._probe, "no uncorrectable ECC errors")

    def _probe(self, nvml: Any, i: int, h: Any) -> tuple[list[Problem], dict[str, Any]]:
        problems: list[Problem] = []
        facts: dict[str, Any] = {}
        volatile = _optional(nvml, lambda: nvml.nvmlDeviceGetTotalEccErrors(
            h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC))
        facts["uncorrected_volatile"] = volatile
        if volatile:
            problems.append((Status.FAIL, f"{volatile} uncorrectable ECC errors since boot"))
        rows = _optional(nvml, lambda: nvml.nvmlDeviceGetRemappedRows(h))
        if rows is not None:
            corr, unc, pending, failure = rows
            facts.update(remapped_correctable=corr, remapped_uncorrectable=unc,
                         remap_pending=bool(pending), remap_failure=bool(failure))
            if failure:
                problems.append((Status.FAIL, "row remapping failed (RMA candidate)"))
            elif pending:
                problems.append((Status.WARN, "row remap pending: GPU reset needed"))
            return problems, facts
        retired = _optional(nvml, lambda: nvml.nvmlDeviceGetRetiredPages(
            h, nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR))
        pending = _optional(nvml, lambda: nvml.nvmlDeviceGetRetiredPagesPendingStatus(h))
        facts.update(retired_pages_dbe=None if retired is None else len(retired), retire_pending=bool(pending))
        if retired is not None and len(retired) >= self.max_retired_pages:
            problems.append((Status.FAIL, f"{len(retired)} retired pages (limit {self.max_retired_pages})"))
        if pending:
            problems.append((Status.WARN, "page retirement pending: GPU reset needed"))
        return problems, facts


def _optional(nvml: Any, call: Callable[[], Any]) -> Any:
    """The value, or None where this GPU does not support the query."""
    try:
        return call()
    except nvml.NVMLError as e:
        if nvml_code(nvml, e) in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
            return None
        raise


THROTTLE_NAMES = {
    "nvmlClocksThrottleReasonHwSlowdown": "hw_slowdown",
    "nvmlClocksThrottleReasonHwThermalSlowdown": "hw_thermal_slowdown",
    "nvmlClocksThrottleReasonHwPowerBrakeSlowdown": "hw_power_brake",
    "nvmlClocksThrottleReasonSwThermalSlowdown": "sw_thermal_slowdown",
    "nvmlClocksThrottleReasonSwPowerCap": "sw_power_cap",
    "nvmlClocksThrottleReasonGpuIdle": "idle",
    "nvmlClocksThrottleReasonApplicationsClocksSetting": "applications_clocks",
    "nvmlClocksThrottleReasonSyncBoost": "sync_boost",
}
HW_THROTTLE = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake")


@dataclass
class ThermalCheck:
    """Temperature against the GPU's slowdown threshold, and hardware throttle reasons."""

    name: str = "thermal"
    requeue_on_fail: bool = False
    warn_margin_c: int = 5
    max_temp_c: int | None = None  # overrides the GPU's own slowdown threshold
    fail_on_hw_throttle: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        return per_gpu(ctx, self._probe, "temperatures normal, no hardware throttling")

    def _probe(self, nvml: Any, i: int, h: Any) -> tuple[list[Problem], dict[str, Any]]:
        temp = nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
        limit = self.max_temp_c or _optional(nvml, lambda: nvml.nvmlDeviceGetTemperatureThreshold(
            h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))
        mask = _optional(nvml, lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)) or 0
        reasons = sorted(n for attr, n in THROTTLE_NAMES.items() if mask & getattr(nvml, attr, 0))
        facts = {"temp_c": temp, "slowdown_c": limit, "throttle": reasons}
        problems: list[Problem] = []
        if limit and temp >= limit:
            problems.append((Status.FAIL, f"{temp} C at or above slowdown threshold {limit} C"))
        elif limit and temp >= limit - self.warn_margin_c:
            problems.append((Status.WARN, f"{temp} C within {self.warn_margin_c} C of slowdown {limit} C"))
        hw = [r for r in reasons if r in HW_THROTTLE]
        if hw:
            problems.append((Status.FAIL if self.fail_on_hw_throttle else Status.WARN,
                             "throttled by " + ", ".join(hw)))
        elif "sw_thermal_slowdown" in reasons:
            problems.append((Status.WARN, "throttled by sw_thermal_slowdown"))
        return problems, facts


@dataclass
class NvlinkCheck:
    """NVLink link state. Expected active links: `expected_links`, else the node label `nvlinks`,
    else the most seen on that GPU before (a link that was up and is now down fails)."""

    name: str = "nvlink"
    requeue_on_fail: bool = False
    expected_links: int | None = None
    _seen: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        label = ctx.node.labels.get("nvlinks")
        expected = self.expected_links if self.expected_links is not None else (
            int(label) if label and label.isdigit() else None)

        def probe(nvml: Any, i: int, h: Any) -> tuple[list[Problem], dict[str, Any]]:
            states = _link_states(nvml, h)
            active = sum(states)
            key = (ctx.node.name, i)
            want = expected if expected is not None else self._seen.get(key)
            self._seen[key] = max(self._seen.get(key, 0), active)
            facts = {"links": len(states), "active": active, "inactive": [n for n, s in enumerate(states) if not s]}
            if want is not None and active < want:
                down = ", ".join(str(n) for n in facts["inactive"]) or "?"
                return [(Status.FAIL, f"{active}/{want} NVLinks active (down: {down})")], facts
            if not states and expected:
                return [(Status.FAIL, f"no NVLink reported, {expected} expected")], facts
            return [], facts

        return per_gpu(ctx, probe, "NVLinks up")


def _link_states(nvml: Any, h: Any) -> list[int]:
    states: list[int] = []
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        try:
            states.append(1 if nvml.nvmlDeviceGetNvLinkState(h, link) else 0)
        except nvml.NVMLError as e:
            if nvml_code(nvml, e) in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_INVALID_ARGUMENT):
                break  # past the last link of this GPU (or no NVLink at all)
            raise
    return states


@dataclass
class PersistenceCheck:
    """Persistence mode on (keeps the driver loaded; off slows job starts and loses state)."""

    name: str = "persistence"
    requeue_on_fail: bool = False
    required: bool = False  # True: off is a failure, else a warning

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        status = Status.FAIL if self.required else Status.WARN

        def probe(nvml: Any, i: int, h: Any) -> tuple[list[Problem], dict[str, Any]]:
            on = nvml.nvmlDeviceGetPersistenceMode(h) == nvml.NVML_FEATURE_ENABLED
            return ([] if on else [(status, "persistence mode off")]), {"persistence": on}

        return per_gpu(ctx, probe, "persistence mode on")


@dataclass
class DriverCheck:
    """The driver version matches the node's `driver` label ("560.35" matches "560.35.03")."""

    name: str = "driver"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if (s := skipped(ctx)) is not None:
            return s
        actual = text(ctx.nvml.nvmlSystemGetDriverVersion())
        expected = ctx.node.labels.get("driver")
        facts = {"driver": actual, "expected": expected}
        if not expected:
            return CheckResult(Status.OK, f"driver {actual} (no expected `driver` label)", facts)
        if actual == expected or actual.startswith(expected + "."):
            return CheckResult(Status.OK, f"driver {actual}", facts)
        return CheckResult(Status.FAIL, f"driver {actual}, node label expects {expected}", facts)


def nvml_checks() -> list[Any]:
    """The built-in NVML checks with their defaults."""
    return [GpuInventoryCheck(), XidCheck(), EccCheck(), ThermalCheck(), NvlinkCheck(),
            PersistenceCheck(), DriverCheck()]
