"""A fake NVML with fault injection: one virtual NVML per inventory node, no GPU needed.

`FakeNvmlFleet(nodes).for_node(name)` returns an object with the same functions, constants and
exception classes as `pynvml` (those the health checks call, see `IMPLEMENTED`), so the checks have
one code path. Constants and `NVMLError*` classes are pynvml's own; a pynvml function the fake does
not implement raises AttributeError instead of silently succeeding.

Faults (per virtual node and GPU), for tests and demos:

    fleet.raise_xid("dgx1", gpu=3, xid=79)     # an XID event, seen once by the XID check
    fleet.ecc_error("dgx1", gpu=0, count=1)    # volatile uncorrectable ECC + a pending row remap
    fleet.lose_gpu("dgx1", gpu=5)              # the GPU disappears (count drops, handle lost)
    fleet.overheat("dgx1", gpu=1)              # above the slowdown threshold, HW thermal throttle
    fleet.nvlink_down("dgx1", gpu=2, link=0)   # one NVLink inactive
    fleet.persistence_off("dgx1", gpu=0)
    fleet.set_driver("dgx1", "535.104")
    fleet.set_vbios("dgx1", gpu=0, version="96.00.89.00.01")
    fleet.stray_process("dgx1", gpu=0, pid=4242)   # a process gpufleet did not start, on the GPU
    fleet.throttle("dgx1", gpu=0, reason="sw_power_cap")  # a throttle reason active (no heat)
    fleet.clock_drop("dgx1", gpu=0, sm_mhz=900)    # the SM clock falls below what was asked
    fleet.clear("dgx1")                        # heal everything on the node
    fleet.inject({"node": "dgx1", "fault": "xid", "gpu": 3, "xid": 79})  # the same, from JSON
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pynvml

from gpufleet.domain import Node, ValidationError

DEFAULT_DRIVER = "560.35"
NVLINKS_PER_GPU = 12  # links reported active on a GPU in an NVLink group of more than one GPU
IMPLEMENTED = frozenset({
    "nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetTemperature",
    "nvmlDeviceGetTemperatureThreshold", "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetNvLinkState", "nvmlDeviceGetPersistenceMode", "nvmlEventSetCreate",
    "nvmlDeviceRegisterEvents", "nvmlEventSetWait_v2", "nvmlEventSetFree", "nvmlDeviceGetNumaNodeId",
    # hardware identity and clean-room runs
    "nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetSerial", "nvmlDeviceGetVbiosVersion",
    "nvmlDeviceGetBoardPartNumber", "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetApplicationsClock",
    "nvmlDeviceGetDefaultApplicationsClock", "nvmlDeviceGetClockInfo", "nvmlDeviceGetEccMode",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks",
    "nvmlDeviceSetApplicationsClocks", "nvmlDeviceResetApplicationsClocks",
})
# full product names of the short models the inventory uses (a fake GPU otherwise is "NVIDIA <MODEL>")
PRODUCT_NAMES = {"a100": "NVIDIA A100-SXM4-80GB", "h100": "NVIDIA H100 80GB HBM3", "h200": "NVIDIA H200",
                 "l40s": "NVIDIA L40S", "a10": "NVIDIA A10", "v100": "Tesla V100-SXM2-32GB"}
DEFAULT_CUDA = 12060  # nvmlSystemGetCudaDriverVersion: 12.6


@dataclass(slots=True)
class FakeGpu:
    index: int
    name: str
    uuid: str
    memory_mb: int
    nvlinks: list[int]  # 1 = active, 0 = inactive; empty: no NVLink (PCIe card)
    temp_c: int = 45
    slowdown_c: int = 87
    shutdown_c: int = 92
    throttle: int = 0
    ecc_volatile_unc: int = 0
    ecc_aggregate_unc: int = 0
    remap_corr: int = 0
    remap_unc: int = 0
    remap_pending: int = 0
    remap_failure: int = 0
    retired_dbe: list[int] = field(default_factory=list)
    retire_pending: int = 0
    persistence: int = pynvml.NVML_FEATURE_ENABLED
    present: bool = True
    numa: int = 0
    serial: str = ""
    vbios: str = "96.00.89.00.01"
    board_part: str = "692-2G506-0200-002"
    pcie_gen: int = 4
    pcie_width: int = 16
    power_limit_mw: int = 400_000
    power_mw: int = 60_000
    util_pct: int = 0
    max_sm_mhz: int = 1410
    max_mem_mhz: int = 1593
    base_sm_mhz: int = 1095  # default application clocks
    base_mem_mhz: int = 1593
    app_sm_mhz: int = 1095
    app_mem_mhz: int = 1593
    locked_sm_mhz: int | None = None  # nvmlDeviceSetGpuLockedClocks
    clock_cap_mhz: int | None = None  # an injected clock drop: the SM clock never exceeds this
    ecc_on: int = 1
    processes: list[int] = field(default_factory=list)  # pids of stray compute processes


@dataclass(slots=True)
class FakeEvent:
    """Mirrors pynvml.c_nvmlEventData_t: device handle, eventType, eventData (the XID)."""

    device: Any
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass(eq=False, slots=True)
class FakeEventSet:
    events: list[FakeEvent] = field(default_factory=list)
    watched: dict[int, int] = field(default_factory=dict)  # gpu index -> event type mask
    freed: bool = False


@dataclass(frozen=True, slots=True)
class FakeHandle:
    node: str
    index: int


@dataclass(slots=True)
class FakeNodeState:
    name: str
    driver: str
    gpus: list[FakeGpu]
    event_sets: list[FakeEventSet] = field(default_factory=list)
    init_count: int = 0


class FakeNvmlFleet:
    """All virtual nodes' NVML state, thread-safe. Selected by config `health.nvml: fake`."""

    def __init__(self, nodes: Iterable[Node] = (), driver: str | None = None):
        self._lock = threading.RLock()
        self._nodes: dict[str, FakeNodeState] = {}
        self._default_driver = driver
        for node in nodes:
            self.add_node(node)

    def add_node(self, node: Node) -> None:
        """A virtual node that matches its inventory entry (so all checks pass until a fault)."""
        group_sizes: dict[int, int] = {}
        for g in node.gpus:
            group_sizes[g.group] = group_sizes.get(g.group, 0) + 1
        gpus = [
            FakeGpu(
                index=g.index, name=f"NVIDIA {g.model.upper()}", uuid=g.uuid or f"GPU-{node.name}-{g.index}",
                memory_mb=g.memory_mb or 16384,
                nvlinks=[1] * NVLINKS_PER_GPU if group_sizes[g.group] > 1 else [],
                numa=g.group, serial=f"13233{zlib.crc32(f'{node.name}/{g.index}'.encode()) % 10**8:08d}",
            )
            for g in node.gpus
        ]
        for g, fg in zip(node.gpus, gpus):
            fg.name = node.labels.get("gpu_name") or PRODUCT_NAMES.get(g.model, fg.name)
            fg.vbios = node.labels.get("vbios", fg.vbios).split("|")[0]
        driver = self._default_driver or node.labels.get("driver") or DEFAULT_DRIVER
        with self._lock:
            self._nodes[node.name] = FakeNodeState(node.name, driver, gpus)

    @property
    def node_names(self) -> list[str]:
        return sorted(self._nodes)

    def for_node(self, name: str) -> FakeNvml | None:
        """The pynvml look-alike of one virtual node (None for a node the fleet does not know)."""
        return FakeNvml(self, name) if name in self._nodes else None

    # -- fault injection -------------------------------------------------------------------

    def raise_xid(self, node: str, gpu: int, xid: int = 79) -> None:
        with self._lock:
            state = self._state(node)
            self._gpu(state, gpu)
            for es in state.event_sets:
                if not es.freed and es.watched.get(gpu, 0) & pynvml.nvmlEventTypeXidCriticalError:
                    es.events.append(FakeEvent(FakeHandle(node, gpu),
                                               pynvml.nvmlEventTypeXidCriticalError, int(xid)))

    def ecc_error(self, node: str, gpu: int, count: int = 1, remap_failure: bool = False) -> None:
        with self._lock:
            g = self._gpu(self._state(node), gpu)
            g.ecc_volatile_unc += count
            g.ecc_aggregate_unc += count
            g.remap_unc += count
            g.remap_pending = 1
            g.remap_failure = 1 if remap_failure else g.remap_failure

    def lose_gpu(self, node: str, gpu: int) -> None:
        with self._lock:
            self._gpu(self._state(node), gpu).present = False

    def overheat(self, node: str, gpu: int, temp_c: int | None = None) -> None:
        with self._lock:
            g = self._gpu(self._state(node), gpu)
            g.temp_c = temp_c if temp_c is not None else g.slowdown_c + 3
            g.throttle |= pynvml.nvmlClocksThrottleReasonHwThermalSlowdown

    def nvlink_down(self, node: str, gpu: int, link: int = 0) -> None:
        with self._lock:
            g = self._gpu(self._state(node), gpu)
            if not 0 <= link < len(g.nvlinks):
                raise ValidationError("link", f"GPU {gpu} on {node} has {len(g.nvlinks)} NVLinks")
            g.nvlinks[link] = 0

    def persistence_off(self, node: str, gpu: int) -> None:
        with self._lock:
            self._gpu(self._state(node), gpu).persistence = pynvml.NVML_FEATURE_DISABLED

    def set_driver(self, node: str, version: str) -> None:
        with self._lock:
            self._state(node).driver = version

    def set_vbios(self, node: str, gpu: int, version: str) -> None:
        with self._lock:
            self._gpu(self._state(node), gpu).vbios = version

    def stray_process(self, node: str, gpu: int, pid: int = 4242) -> None:
        with self._lock:
            self._gpu(self._state(node), gpu).processes.append(int(pid))

    def throttle(self, node: str, gpu: int, reason: str = "sw_power_cap") -> None:
        """An active throttle reason without heat: sw_power_cap, hw_slowdown, hw_power_brake, ..."""
        bits = {"sw_power_cap": pynvml.nvmlClocksThrottleReasonSwPowerCap,
                "hw_slowdown": pynvml.nvmlClocksThrottleReasonHwSlowdown,
                "hw_thermal_slowdown": pynvml.nvmlClocksThrottleReasonHwThermalSlowdown,
                "hw_power_brake": pynvml.nvmlClocksThrottleReasonHwPowerBrakeSlowdown,
                "sw_thermal_slowdown": pynvml.nvmlClocksThrottleReasonSwThermalSlowdown}
        if reason not in bits:
            raise ValidationError("reason", f"one of {sorted(bits)}")
        with self._lock:
            self._gpu(self._state(node), gpu).throttle |= bits[reason]

    def clock_drop(self, node: str, gpu: int, sm_mhz: int | None = None) -> None:
        with self._lock:
            g = self._gpu(self._state(node), gpu)
            g.clock_cap_mhz = int(sm_mhz) if sm_mhz is not None else g.base_sm_mhz // 2

    def set_utilization(self, node: str, gpu: int, pct: int) -> None:
        """What nvmlDeviceGetUtilizationRates reports for the GPU from now on (busy accounting)."""
        with self._lock:
            self._gpu(self._state(node), gpu).util_pct = max(0, min(100, int(pct)))

    def clear(self, node: str) -> None:
        """Heal the node: every GPU back to the healthy default, pending events dropped."""
        with self._lock:
            state = self._state(node)
            for g in state.gpus:
                g.present, g.temp_c, g.throttle = True, 45, 0
                g.ecc_volatile_unc = g.remap_unc = g.remap_pending = g.remap_failure = 0
                g.retire_pending, g.persistence = 0, pynvml.NVML_FEATURE_ENABLED
                g.nvlinks = [1] * len(g.nvlinks)
                g.processes, g.clock_cap_mhz = [], None
            for es in state.event_sets:
                es.events.clear()

    def inject(self, fault: Mapping[str, Any]) -> None:
        """One fault from a JSON-like mapping: {"node", "fault", "gpu", ...} (API/CLI demos)."""
        kind = str(fault.get("fault", ""))
        node = str(fault.get("node", ""))
        gpu = int(fault.get("gpu", 0))
        actions = {
            "xid": lambda: self.raise_xid(node, gpu, int(fault.get("xid", 79))),
            "ecc": lambda: self.ecc_error(node, gpu, int(fault.get("count", 1)),
                                          bool(fault.get("remap_failure", False))),
            "missing_gpu": lambda: self.lose_gpu(node, gpu),
            "overheat": lambda: self.overheat(node, gpu, fault.get("temp_c")),
            "nvlink_down": lambda: self.nvlink_down(node, gpu, int(fault.get("link", 0))),
            "persistence_off": lambda: self.persistence_off(node, gpu),
            "driver": lambda: self.set_driver(node, str(fault.get("version", ""))),
            "vbios": lambda: self.set_vbios(node, gpu, str(fault.get("version", ""))),
            "stray_process": lambda: self.stray_process(node, gpu, int(fault.get("pid", 4242))),
            "throttle": lambda: self.throttle(node, gpu, str(fault.get("reason", "sw_power_cap"))),
            "clock_drop": lambda: self.clock_drop(node, gpu, fault.get("sm_mhz")),
            "utilization": lambda: self.set_utilization(node, gpu, int(fault.get("pct", 100))),
            "clear": lambda: self.clear(node),
        }
        if kind not in actions:
            raise ValidationError("fault", f"unknown fault {kind!r}; one of {sorted(actions)}")
        actions[kind]()

    # -- internals used by FakeNvml --------------------------------------------------------

    def _state(self, node: str) -> FakeNodeState:
        try:
            return self._nodes[node]
        except KeyError:
            raise ValidationError("node", f"no virtual node {node!r} in the fake NVML") from None

    @staticmethod
    def _gpu(state: FakeNodeState, index: int) -> FakeGpu:
        for g in state.gpus:
            if g.index == index:
                return g
        raise ValidationError("gpu", f"node {state.name} has no GPU {index}")


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml:
    """pynvml's surface for one virtual node. Unimplemented functions raise AttributeError."""

    def __init__(self, fleet: FakeNvmlFleet, node: str):
        self._fleet = fleet
        self._node = node

    def __getattr__(self, name: str) -> Any:
        value = getattr(pynvml, name)  # constants, NVMLError classes, structures
        if callable(value) and not isinstance(value, type):
            raise AttributeError(f"the fake NVML does not implement {name}")
        return value

    # -- helpers -------------------------------------------------------------------------

    @property
    def _s(self) -> FakeNodeState:
        state = self._fleet._state(self._node)
        if state.init_count <= 0:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
        return state

    def _present(self) -> list[FakeGpu]:
        return [g for g in self._s.gpus if g.present]

    def _g(self, handle: FakeHandle) -> FakeGpu:
        if not isinstance(handle, FakeHandle) or handle.node != self._node:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        g = FakeNvmlFleet._gpu(self._s, handle.index)
        if not g.present:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return g

    # -- library -------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        with self._fleet._lock:
            self._fleet._state(self._node).init_count += 1

    def nvmlShutdown(self) -> None:
        with self._fleet._lock:
            state = self._fleet._state(self._node)
            if state.init_count <= 0:
                raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
            state.init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._s.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self._present())

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        present = self._present()
        if not 0 <= index < len(present):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(self._node, present[index].index)

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        present = [g.index for g in self._present()]
        return present.index(self._g(handle).index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._g(handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._g(handle).uuid

    def nvmlDeviceGetNumaNodeId(self, handle: FakeHandle) -> int:
        return self._g(handle).numa

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> Any:
        total = self._g(handle).memory_mb * 1024 * 1024
        return pynvml.c_nvmlMemory_t(total=total, free=total, used=0)

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, error_type: int, counter_type: int) -> int:
        g = self._g(handle)
        if error_type != pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return 0
        return g.ecc_volatile_unc if counter_type == pynvml.NVML_VOLATILE_ECC else g.ecc_aggregate_unc

    def nvmlDeviceGetRemappedRows(self, handle: FakeHandle) -> tuple[int, int, int, int]:
        g = self._g(handle)
        return (g.remap_corr, g.remap_unc, g.remap_pending, g.remap_failure)

    def nvmlDeviceGetRetiredPages(self, handle: FakeHandle, cause: int) -> list[int]:
        g = self._g(handle)
        return list(g.retired_dbe) if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR else []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeHandle) -> int:
        return self._g(handle).retire_pending

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        return self._g(handle).temp_c

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeHandle, threshold: int) -> int:
        g = self._g(handle)
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            return g.slowdown_c
        if threshold == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
            return g.shutdown_c
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        return self._g(handle).throttle

    def nvmlDeviceGetNvLinkState(self, handle: FakeHandle, link: int) -> int:
        g = self._g(handle)
        if not g.nvlinks:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < len(g.nvlinks):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return g.nvlinks[link]

    def nvmlDeviceGetPersistenceMode(self, handle: FakeHandle) -> int:
        return self._g(handle).persistence

    def nvmlEventSetCreate(self) -> FakeEventSet:
        es = FakeEventSet()
        with self._fleet._lock:
            self._s.event_sets.append(es)
        return es

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, event_types: int, event_set: FakeEventSet) -> None:
        g = self._g(handle)
        with self._fleet._lock:
            event_set.watched[g.index] = event_set.watched.get(g.index, 0) | int(event_types)

    def nvmlEventSetWait_v2(self, event_set: FakeEventSet, timeout_ms: int) -> FakeEvent:
        """Never blocks (a fake has no interrupts): returns a queued event or raises Timeout."""
        with self._fleet._lock:
            self._s  # noqa: B018 - raises when not initialised, like the real one
            if event_set.freed:
                raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            if not event_set.events:
                raise _err(pynvml.NVML_ERROR_TIMEOUT)
            return event_set.events.pop(0)

    def nvmlEventSetFree(self, event_set: FakeEventSet) -> None:
        with self._fleet._lock:
            event_set.freed = True
            state = self._fleet._state(self._node)
            if event_set in state.event_sets:
                state.event_sets.remove(event_set)

    # -- hardware identity and clean-room runs ---------------------------------------------

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._s  # noqa: B018
        return DEFAULT_CUDA

    def nvmlDeviceGetSerial(self, handle: FakeHandle) -> str:
        return self._g(handle).serial

    def nvmlDeviceGetVbiosVersion(self, handle: FakeHandle) -> str:
        return self._g(handle).vbios

    def nvmlDeviceGetBoardPartNumber(self, handle: FakeHandle) -> str:
        return self._g(handle).board_part

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: FakeHandle) -> int:
        return self._g(handle).pcie_gen

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: FakeHandle) -> int:
        return self._g(handle).pcie_width

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._g(handle).power_limit_mw

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._g(handle).power_mw

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> Any:
        return pynvml.c_nvmlUtilization_t(gpu=self._g(handle).util_pct, memory=0)

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, clock: int) -> int:
        g = self._g(handle)
        return g.max_sm_mhz if clock in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS) else g.max_mem_mhz

    def nvmlDeviceGetApplicationsClock(self, handle: FakeHandle, clock: int) -> int:
        g = self._g(handle)
        return g.app_sm_mhz if clock in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS) else g.app_mem_mhz

    def nvmlDeviceGetDefaultApplicationsClock(self, handle: FakeHandle, clock: int) -> int:
        g = self._g(handle)
        return g.base_sm_mhz if clock in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS) else g.base_mem_mhz

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock: int) -> int:
        """The current clock: locked (else application) SM clock, capped by an injected drop."""
        g = self._g(handle)
        if clock not in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return g.app_mem_mhz
        sm = g.locked_sm_mhz or g.app_sm_mhz
        return min(sm, g.clock_cap_mhz) if g.clock_cap_mhz is not None else sm

    def nvmlDeviceGetEccMode(self, handle: FakeHandle) -> list[int]:
        g = self._g(handle)
        return [g.ecc_on, g.ecc_on]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        return [FakeProcess(pid) for pid in self._g(handle).processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeHandle) -> list[Any]:
        self._g(handle)
        return []

    def nvmlDeviceSetGpuLockedClocks(self, handle: FakeHandle, min_mhz: int, max_mhz: int) -> None:
        with self._fleet._lock:
            self._g(handle).locked_sm_mhz = int(max_mhz)

    def nvmlDeviceResetGpuLockedClocks(self, handle: FakeHandle) -> None:
        with self._fleet._lock:
            self._g(handle).locked_sm_mhz = None

    def nvmlDeviceSetApplicationsClocks(self, handle: FakeHandle, mem_mhz: int, sm_mhz: int) -> None:
        with self._fleet._lock:
            g = self._g(handle)
            g.app_mem_mhz, g.app_sm_mhz = int(mem_mhz), int(sm_mhz)

    def nvmlDeviceResetApplicationsClocks(self, handle: FakeHandle) -> None:
        with self._fleet._lock:
            g = self._g(handle)
            g.app_mem_mhz, g.app_sm_mhz = g.base_mem_mhz, g.base_sm_mhz


@dataclass(frozen=True, slots=True)
class FakeProcess:
    """Mirrors pynvml's process info: pid, usedGpuMemory (bytes)."""

    pid: int
    usedGpuMemory: int = 1 << 30
