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
    fleet.clear("dgx1")                        # heal everything on the node
    fleet.inject({"node": "dgx1", "fault": "xid", "gpu": 3, "xid": 79})  # the same, from JSON
"""

from __future__ import annotations

import threading
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
})


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
                numa=g.group,
            )
            for g in node.gpus
        ]
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

    def clear(self, node: str) -> None:
        """Heal the node: every GPU back to the healthy default, pending events dropped."""
        with self._lock:
            state = self._state(node)
            for g in state.gpus:
                g.present, g.temp_c, g.throttle = True, 45, 0
                g.ecc_volatile_unc = g.remap_unc = g.remap_pending = g.remap_failure = 0
                g.retire_pending, g.persistence = 0, pynvml.NVML_FEATURE_ENABLED
                g.nvlinks = [1] * len(g.nvlinks)
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
