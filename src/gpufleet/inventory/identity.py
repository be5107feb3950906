"""Hardware identity from NVML: what each GPU and the node are (product, VBIOS, clocks, driver).

`read_identity(nvml)` takes an initialised pynvml (or the fake) and never fails for a query a
board does not support: that field stays empty. The kernel is this host's (NVML does not say).
"""

from __future__ import annotations

import platform
from typing import Any, Callable

from gpufleet.domain.perf import GpuIdentity, NodeIdentity


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _maybe(call: Callable[[], Any], default: Any = None) -> Any:
    """The value, or `default` where the GPU / driver does not support the query."""
    try:
        return call()
    except Exception:  # NVMLError_NotSupported, FunctionNotFound, an old fake: the field stays empty
        return default


def gpu_identity(nvml: Any, index: int, h: Any) -> GpuIdentity:
    sm, mem = nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM
    ecc = _maybe(lambda: nvml.nvmlDeviceGetEccMode(h))
    power = _maybe(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
    return GpuIdentity(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(h)),
        name=_text(nvml.nvmlDeviceGetName(h)),
        serial=_text(_maybe(lambda: nvml.nvmlDeviceGetSerial(h), "")),
        vbios=_text(_maybe(lambda: nvml.nvmlDeviceGetVbiosVersion(h), "")),
        board_part=_text(_maybe(lambda: nvml.nvmlDeviceGetBoardPartNumber(h), "")),
        memory_mb=int(_maybe(lambda: nvml.nvmlDeviceGetMemoryInfo(h).total, 0)) // (1024 * 1024),
        pcie_gen=_maybe(lambda: int(nvml.nvmlDeviceGetMaxPcieLinkGeneration(h))),
        pcie_width=_maybe(lambda: int(nvml.nvmlDeviceGetMaxPcieLinkWidth(h))),
        power_limit_w=round(power / 1000.0, 1) if power else None,
        max_sm_mhz=_maybe(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(h, sm))),
        max_mem_mhz=_maybe(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(h, mem))),
        app_sm_mhz=_maybe(lambda: int(nvml.nvmlDeviceGetApplicationsClock(h, sm))),
        app_mem_mhz=_maybe(lambda: int(nvml.nvmlDeviceGetApplicationsClock(h, mem))),
        ecc="" if ecc is None else ("on" if ecc[0] else "off"),
    )


def cuda_version(raw: Any) -> str:
    """12060 -> '12.6' (NVML's CUDA_VERSION encoding: 1000 * major + 10 * minor)."""
    try:
        v = int(raw)
    except (TypeError, ValueError):
        return ""
    return f"{v // 1000}.{(v % 1000) // 10}" if v > 0 else ""


def read_identity(nvml: Any, kernel: str | None = None) -> NodeIdentity:
    """The node's identity through an initialised NVML session."""
    gpus = []
    for i in range(nvml.nvmlDeviceGetCount()):
        gpus.append(gpu_identity(nvml, i, nvml.nvmlDeviceGetHandleByIndex(i)))
    return NodeIdentity(
        driver=_text(_maybe(lambda: nvml.nvmlSystemGetDriverVersion(), "")),
        cuda_driver=cuda_version(_maybe(lambda: nvml.nvmlSystemGetCudaDriverVersion())),
        kernel=kernel if kernel is not None else platform.release(),
        gpus=tuple(gpus),
    )


def identity_labels(identity: NodeIdentity) -> dict[str, str]:
    """The node labels discovery sets (constraints match them): sku, vbios, driver, ..."""
    return identity.attributes()
