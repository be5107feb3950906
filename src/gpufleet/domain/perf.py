"""Hardware identity and clean-room performance runs: the plain types other parts read.

`GpuIdentity` / `NodeIdentity`: what NVML says a GPU / node is (inventory/identity.py fills them).
`PerfPolicy`: what a `perf:` job asks for. `PerfSample`: one NVML reading during a run.
`PerfRun`: what a perf run records per attempt and node: prolog/epilog verdicts, validity, the
sampled conditions summarised, and the identity the numbers were measured on. Results (engineer
H2's results/) read `PerfRun.valid`, `PerfRun.reason`, `PerfRun.conditions` and `PerfRun.identity`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from gpufleet.domain.errors import ValidationError

# node attributes (Node.labels keys) that discovery sets from NVML; usable in --constraint
IDENTITY_LABELS = ("sku", "gpu_name", "vbios", "driver", "cuda_driver", "kernel", "board_part",
                   "ecc", "pcie", "power_limit_w")
CLOCK_POLICIES = ("as_is", "base", "max")  # or a number of MHz


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    index: int
    uuid: str
    name: str = ""  # the full product name, "NVIDIA A100-SXM4-80GB"
    serial: str = ""
    vbios: str = ""
    board_part: str = ""
    memory_mb: int = 0
    pcie_gen: int | None = None  # max link generation
    pcie_width: int | None = None  # max link width
    power_limit_w: float | None = None  # enforced power limit
    max_sm_mhz: int | None = None
    max_mem_mhz: int | None = None
    app_sm_mhz: int | None = None  # application clocks (what a run gets without boost)
    app_mem_mhz: int | None = None
    ecc: str = ""  # "on" | "off" | "" (not supported)

    @property
    def sku(self) -> str:
        """'NVIDIA A100-SXM4-80GB' -> 'A100-SXM4-80GB' (what `--constraint sku=` matches)."""
        return sku_of(self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"sku": self.sku}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GpuIdentity:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    driver: str = ""
    cuda_driver: str = ""  # "12.6": the CUDA version the driver supports
    kernel: str = ""
    gpus: tuple[GpuIdentity, ...] = ()

    def attributes(self) -> dict[str, str]:
        """Flat node attributes (stored as versioned rows and as node labels). GPU-level values
        appear when every GPU agrees, else as 'a|b' (so `sku=X` does not match a mixed node)."""
        out = {"driver": self.driver, "cuda_driver": self.cuda_driver, "kernel": self.kernel}
        for key, get in (("sku", lambda g: g.sku), ("gpu_name", lambda g: g.name), ("vbios", lambda g: g.vbios),
                         ("board_part", lambda g: g.board_part), ("ecc", lambda g: g.ecc),
                         ("pcie", lambda g: f"gen{g.pcie_gen}x{g.pcie_width}" if g.pcie_gen else ""),
                         ("power_limit_w", lambda g: f"{g.power_limit_w:g}" if g.power_limit_w else "")):
            values = sorted({get(g) for g in self.gpus} - {""})
            if values:
                out[key] = "|".join(values)
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "cuda_driver": self.cuda_driver, "kernel": self.kernel,
                "gpus": [g.to_dict() for g in self.gpus]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeIdentity:
        return cls(str(d.get("driver", "")), str(d.get("cuda_driver", "")), str(d.get("kernel", "")),
                   tuple(GpuIdentity.from_dict(g) for g in d.get("gpus") or ()))


def sku_of(name: str) -> str:
    n = name.strip()
    for prefix in ("NVIDIA ", "Tesla ", "NVIDIA Tesla "):
        if n.startswith(prefix):
            n = n[len(prefix):]
    return n.replace(" ", "-")


@dataclass(frozen=True, slots=True)
class PerfPolicy:
    """`perf: true` or `perf: {clocks: base|max|<MHz>, max_temp_c: 70, sample_s: 5}`."""

    clocks: str = "as_is"  # as_is: leave clocks alone; base/max/<MHz>: lock, restore after
    max_temp_c: int | None = None  # None: the GPU's own slowdown threshold minus a margin
    sample_s: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return {"clocks": self.clocks, "max_temp_c": self.max_temp_c, "sample_s": self.sample_s}


def parse_perf(value: Any, field_name: str = "perf") -> PerfPolicy | None:
    """None/false -> None; true -> defaults; a mapping -> validated policy."""
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "false", "no", "0")):
        return None
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1")):
        return PerfPolicy()
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, "must be true/false or a mapping {clocks, max_temp_c, sample_s}")
    unknown = set(value) - {"clocks", "max_temp_c", "sample_s"}
    if unknown:
        raise ValidationError(f"{field_name}.{sorted(unknown)[0]}", "unknown key (known: clocks, max_temp_c, sample_s)")
    clocks = str(value.get("clocks", "as_is")).strip().lower()
    if clocks not in CLOCK_POLICIES and not (clocks.isdigit() and 100 <= int(clocks) <= 10000):
        raise ValidationError(f"{field_name}.clocks", "one of as_is, base, max or a clock in MHz (100-10000)")
    temp = value.get("max_temp_c")
    if temp is not None and (isinstance(temp, bool) or not str(temp).isdigit() or not 20 <= int(temp) <= 120):
        raise ValidationError(f"{field_name}.max_temp_c", "an integer between 20 and 120")
    sample = value.get("sample_s", 5.0)
    try:
        sample_f = float(sample)
    except (TypeError, ValueError):
        raise ValidationError(f"{field_name}.sample_s", "a number of seconds") from None
    if isinstance(sample, bool) or not 0.1 <= sample_f <= 3600:
        raise ValidationError(f"{field_name}.sample_s", "between 0.1 and 3600 seconds")
    return PerfPolicy(clocks, int(temp) if temp is not None else None, sample_f)


def perf_from_dict(d: Any) -> PerfPolicy | None:
    """Stored form back (trusted)."""
    if not d:
        return None
    return PerfPolicy(str(d.get("clocks", "as_is")), d.get("max_temp_c"), float(d.get("sample_s", 5.0)))


@dataclass(frozen=True, slots=True)
class PerfCheck:
    """One prolog/epilog check's verdict on one node."""

    name: str  # "stray_processes", "persistence", "clocks", "temperature", "xid_ecc", "throttle", ...
    ok: bool
    reason: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "facts": dict(self.facts)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerfCheck:
        return cls(str(d["name"]), bool(d["ok"]), str(d.get("reason", "")), dict(d.get("facts") or {}))


@dataclass(frozen=True, slots=True)
class PerfSample:
    """One NVML reading of one GPU during a run."""

    at: float
    gpu: int  # physical index on the node
    sm_mhz: int | None = None
    mem_mhz: int | None = None
    temp_c: int | None = None
    power_w: float | None = None
    util_pct: int | None = None
    throttle: tuple[str, ...] = ()  # throttle reasons NVML reports (incl. benign: idle, applications_clocks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"throttle": list(self.throttle)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerfSample:
        return cls(**({k: d[k] for k in cls.__dataclass_fields__ if k in d} | {"throttle": tuple(d.get("throttle") or ())}))


@dataclass(slots=True)
class PerfRun:
    """What a perf run records, per job attempt and node (table `perf_runs`).

    valid: None while running (prolog passed), True after a clean epilog, False with `reason` when
    the prolog refused the node or the epilog saw throttling, a clock drop, an XID or an ECC change.
    conditions: summary of the samples: {"samples": n, "sm_mhz": {"min","max","mean"},
    "mem_mhz": {...}, "temp_c": {...}, "power_w": {...}, "util_pct": {...}, "throttle": [reasons seen]}.
    """

    job_id: int
    attempt: int
    node: str
    policy: PerfPolicy
    started_at: float
    valid: bool | None = None
    reason: str = ""
    ended_at: float | None = None
    prolog: tuple[PerfCheck, ...] = ()
    epilog: tuple[PerfCheck, ...] = ()
    conditions: Mapping[str, Any] = field(default_factory=dict)
    identity: NodeIdentity | None = None
    gpus: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "attempt": self.attempt, "node": self.node,
                "policy": self.policy.to_dict(), "started_at": self.started_at, "ended_at": self.ended_at,
                "perf_valid": self.valid, "reason": self.reason, "gpus": list(self.gpus),
                "prolog": [c.to_dict() for c in self.prolog], "epilog": [c.to_dict() for c in self.epilog],
                "conditions": dict(self.conditions),
                "identity": self.identity.to_dict() if self.identity else None}


_VERSION = re.compile(r"\d+(?:\.\d+)*")


def version_key(value: str) -> tuple[int, ...] | None:
    """'560.35.03' -> (560, 35, 3); None when `value` is not version-like."""
    v = value.strip()
    if not _VERSION.fullmatch(v):
        return None
    return tuple(int(p) for p in v.split("."))
