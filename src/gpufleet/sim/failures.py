"""The failure model of a replay: node faults, repairs, checkpoints, restarts, hot spares.

`gpufleet sim --failure-rate R` (unexpected interruptions per GPU-hour, e.g. Llama 3's ~2e-5)
with `--repair-time D --checkpoint-interval D --checkpoint-cost D --restart-cost D --spares N`,
or `--failures MODEL.yaml` (flags win over the file):

```yaml
rate_per_gpu_hour: 2.0e-5          # per GPU of a node, in calendar time (idle nodes fail too)
interarrival: {distribution: weibull, shape: 0.8}   # or exponential (default); mean = 1 / rate
repair: {distribution: lognormal, median: 4h, sigma: 1.0}
#        {distribution: fixed, time: 4h} | {distribution: exponential, mean: 4h}; or repair_time: 4h
checkpoint_interval: 30m           # default for jobs that declare none (0 / absent: no checkpoints)
checkpoint_cost: 30s               # wall seconds to write one checkpoint (no progress meanwhile)
restart_cost: 5m                   # wall seconds a restarted attempt spends before it makes progress
spares: {per_domain: 2, domain: rack}   # hot spares kept idle per value of this node label
seed: 1
inject: [{node: dgx-007, at: 36h}]  # faults at given times, on top of the random ones
```

Every node has its own random stream (seeded by `seed` and its name), so the same seed gives the
same fault times on the same nodes whatever the schedule: policies compare on the same faults.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gpufleet.domain import ValidationError, parse_duration

INTERARRIVALS = ("exponential", "weibull")
REPAIRS = ("fixed", "exponential", "lognormal", "weibull")


@dataclass(frozen=True, slots=True)
class Dist:
    """A positive random duration: fixed | exponential | lognormal | weibull, by its mean or median."""

    kind: str = "fixed"
    mean_s: float = 4 * 3600.0  # fixed: the value; exponential, weibull: the mean
    median_s: float = 0.0  # lognormal
    sigma: float = 1.0  # lognormal
    shape: float = 1.0  # weibull k

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.mean_s
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.mean_s)
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.median_s), self.sigma)
        return rng.weibullvariate(self.mean_s / math.gamma(1.0 + 1.0 / self.shape), self.shape)

    @property
    def mean(self) -> float:
        if self.kind == "lognormal":
            return self.median_s * math.exp(self.sigma ** 2 / 2)
        return self.mean_s


@dataclass(frozen=True, slots=True)
class FailureModel:
    rate_per_gpu_hour: float = 0.0
    interarrival: str = "exponential"
    shape: float = 1.0  # weibull k of the inter-arrival times (k < 1: early failures dominate)
    repair: Dist = field(default_factory=Dist)
    checkpoint_interval_s: float = 0.0  # 0: jobs without their own interval never checkpoint
    checkpoint_cost_s: float = 0.0
    restart_cost_s: float = 0.0
    spares_per_domain: int = 0
    spare_domain: str = "rack"  # node label; nodes without it form one domain
    seed: int = 0
    injected: tuple[tuple[str, float], ...] = ()  # (node name, time): faults on top of the random ones

    def node_mtbf_s(self, gpus: int) -> float:
        """Mean time between faults of one node with `gpus` GPUs (inf when the rate is 0)."""
        rate = self.rate_per_gpu_hour * gpus / 3600.0
        return 1.0 / rate if rate > 0 else math.inf

    def interarrival_dist(self, gpus: int) -> Dist:
        mean = self.node_mtbf_s(gpus)
        if self.interarrival == "weibull":
            return Dist("weibull", mean_s=mean, shape=self.shape)
        return Dist("exponential", mean_s=mean)

    def describe(self) -> dict[str, Any]:
        return {
            "rate_per_gpu_hour": self.rate_per_gpu_hour, "interarrival": self.interarrival,
            "shape": self.shape, "repair": {"distribution": self.repair.kind, "mean_s": self.repair.mean},
            "checkpoint_interval_s": self.checkpoint_interval_s, "checkpoint_cost_s": self.checkpoint_cost_s,
            "restart_cost_s": self.restart_cost_s, "spares_per_domain": self.spares_per_domain,
            "spare_domain": self.spare_domain, "seed": self.seed,
            "injected": [{"node": n, "at_s": t} for n, t in self.injected],
        }


class NodeFaults:
    """One random stream per node: its next fault (a renewal process from its last repair) and
    how long each repair takes. Independent of the schedule, so deterministic per seed and name."""

    def __init__(self, model: FailureModel, names: list[str], gpus: list[int]):
        self.model = model
        self.rngs = [random.Random(f"{model.seed}/{name}") for name in names]
        self.between = [model.interarrival_dist(g) for g in gpus]

    def next_fault(self, i: int, since: float) -> float:
        d = self.between[i]
        if math.isinf(d.mean_s):
            return math.inf
        return since + d.sample(self.rngs[i])

    def repair_time(self, i: int) -> float:
        return max(0.0, self.model.repair.sample(self.rngs[i]))


# -- checkpoint/restart arithmetic (Young/Daly) -------------------------------------------------------

def young_daly_interval(checkpoint_cost_s: float, mtbf_s: float) -> float:
    """Young's first-order optimum checkpoint interval sqrt(2 C M)."""
    return math.sqrt(2.0 * checkpoint_cost_s * mtbf_s)


def daly_efficiency(interval_s: float, checkpoint_cost_s: float, restart_cost_s: float, mtbf_s: float) -> float:
    """Expected useful share of wall time with exponential faults (Daly 2006): work tau per segment,
    a checkpoint of C after it, a restart of R after each fault, faults possible at any moment."""
    m = mtbf_s
    if not math.isfinite(m):
        return interval_s / (interval_s + checkpoint_cost_s)
    return interval_s / (m * math.exp(restart_cost_s / m) * math.expm1((interval_s + checkpoint_cost_s) / m))


def daly_bound(checkpoint_cost_s: float, restart_cost_s: float, mtbf_s: float) -> tuple[float, float]:
    """(best interval, its efficiency): Daly's efficiency maximised over the interval (golden section)."""
    lo, hi = 1.0, max(10.0, 4.0 * mtbf_s)
    g = (math.sqrt(5) - 1) / 2
    f = lambda t: daly_efficiency(t, checkpoint_cost_s, restart_cost_s, mtbf_s)  # noqa: E731
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(200):
        if f(a) > f(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    best = (lo + hi) / 2
    return best, f(best)


def run_wall_s(work_s: float, interval_s: float, cost_s: float, restart_s: float) -> float:
    """Wall seconds an attempt needs for `work_s` of progress: its restart, the work, a checkpoint
    after every full interval but the last."""
    checkpoints = math.ceil(work_s / interval_s) - 1 if interval_s > 0 and work_s > 0 else 0
    return restart_s + work_s + max(0, checkpoints) * cost_s


def progress_s(elapsed_s: float, interval_s: float, cost_s: float, restart_s: float,
               saved_only: bool) -> float:
    """Progress of an attempt after `elapsed_s` wall seconds. `saved_only` (a fault): only what the
    last completed checkpoint holds; otherwise (an end, a preemption) all the work done."""
    e = elapsed_s - restart_s
    if e <= 0:
        return 0.0
    if interval_s <= 0:
        return 0.0 if saved_only else e
    k = math.floor(e / (interval_s + cost_s))
    if saved_only:
        return k * interval_s
    return k * interval_s + min(e - k * (interval_s + cost_s), interval_s)


# -- reading the model ---------------------------------------------------------------------------------

def load_failure_model(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValidationError("failures", f"no such file: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValidationError("failures", f"not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValidationError("failures", "must be a mapping (rate_per_gpu_hour, repair, ...)")
    return data


_KEYS = {"rate_per_gpu_hour", "interarrival", "repair", "repair_time", "checkpoint_interval",
         "checkpoint_cost", "restart_cost", "spares", "seed", "inject"}


def make_failure_model(data: dict[str, Any], **flags: Any) -> FailureModel:
    """A FailureModel from a parsed YAML mapping, then non-None flag values (flags win).
    Flags: rate, repair_time, checkpoint_interval, checkpoint_cost, restart_cost, spares, spare_domain, seed."""
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValidationError(f"failures.{unknown[0]}", f"unknown key; known: {sorted(_KEYS)}")
    f = {k: v for k, v in flags.items() if v is not None}
    m = FailureModel()
    rate = f.get("rate", data.get("rate_per_gpu_hour", 0.0))
    m = replace(m, rate_per_gpu_hour=_rate(rate, "failure_rate" if "rate" in f else "failures.rate_per_gpu_hour"))
    m = _interarrival(m, data.get("interarrival"))
    if "repair_time" in f:
        m = replace(m, repair=Dist("fixed", mean_s=_dur(f["repair_time"], "repair_time")))
    elif "repair_time" in data:
        m = replace(m, repair=Dist("fixed", mean_s=_dur(data["repair_time"], "failures.repair_time")))
    elif "repair" in data:
        m = replace(m, repair=_repair(data["repair"]))
    for key in ("checkpoint_interval", "checkpoint_cost", "restart_cost"):
        where = key if key in f else f"failures.{key}"
        value = f.get(key, data.get(key))
        if value is not None:
            m = replace(m, **{f"{key}_s": _dur(value, where, zero_ok=True)})
    m = _spares(m, data.get("spares"), f.get("spares"), f.get("spare_domain"))
    seed = f.get("seed", data.get("seed", 0))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError("seed" if "seed" in f else "failures.seed", f"must be an integer, got {seed!r}")
    return replace(m, seed=seed, injected=_injected(data.get("inject", [])))


def _injected(spec: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(spec, list):
        raise ValidationError("failures.inject", "must be a list of {node, at}")
    out = []
    for k, item in enumerate(spec):
        if not isinstance(item, dict) or not item.get("node") or "at" not in item:
            raise ValidationError(f"failures.inject[{k}]", "must be a mapping {node: NAME, at: DURATION}")
        out.append((str(item["node"]), _dur(item["at"], f"failures.inject[{k}].at", zero_ok=True)))
    return tuple(sorted(out, key=lambda x: (x[1], x[0])))


def _rate(value: Any, where: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValidationError(where, f"must be a number of interruptions per GPU-hour, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(rate) or rate < 0:
        raise ValidationError(where, f"must be a number >= 0 (per GPU-hour), got {value!r}")
    return rate


def _dur(value: Any, where: str, zero_ok: bool = False) -> float:
    if zero_ok and (value == 0 or value == "0"):
        return 0.0
    return float(parse_duration(value if isinstance(value, (int, float)) else str(value), where))


def _interarrival(m: FailureModel, spec: Any) -> FailureModel:
    if spec is None:
        return m
    if isinstance(spec, str):
        spec = {"distribution": spec}
    if not isinstance(spec, dict):
        raise ValidationError("failures.interarrival", "must be a mapping {distribution, shape}")
    kind = str(spec.get("distribution", "exponential")).lower()
    if kind not in INTERARRIVALS:
        raise ValidationError("failures.interarrival.distribution", f"must be one of {list(INTERARRIVALS)}, got {kind!r}")
    shape = _positive(spec.get("shape", 1.0), "failures.interarrival.shape")
    return replace(m, interarrival=kind, shape=shape)


def _repair(spec: Any) -> Dist:
    if not isinstance(spec, dict):
        raise ValidationError("failures.repair", "must be a mapping {distribution, time|mean|median, ...}")
    kind = str(spec.get("distribution", "fixed")).lower()
    if kind not in REPAIRS:
        raise ValidationError("failures.repair.distribution", f"must be one of {list(REPAIRS)}, got {kind!r}")
    if kind == "lognormal":
        median = _dur(spec.get("median"), "failures.repair.median")
        return Dist(kind, median_s=median, sigma=_positive(spec.get("sigma", 1.0), "failures.repair.sigma"))
    key = "time" if kind == "fixed" else "mean"
    mean = _dur(spec.get(key), f"failures.repair.{key}")
    shape = _positive(spec.get("shape", 1.0), "failures.repair.shape") if kind == "weibull" else 1.0
    return Dist(kind, mean_s=mean, shape=shape)


def _spares(m: FailureModel, spec: Any, flag: Any, domain_flag: Any) -> FailureModel:
    per, domain = 0, m.spare_domain
    if spec is not None:
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = {"per_domain": spec}
        if not isinstance(spec, dict):
            raise ValidationError("failures.spares", "must be a mapping {per_domain, domain}")
        per, domain = spec.get("per_domain", 0), str(spec.get("domain", domain))
    where = "failures.spares.per_domain"
    if flag is not None:
        per, where = flag, "spares"
    if domain_flag is not None:
        domain = str(domain_flag)
    if isinstance(per, bool) or not isinstance(per, int) or per < 0:
        raise ValidationError(where, f"must be a whole number >= 0, got {per!r}")
    return replace(m, spares_per_domain=per, spare_domain=domain)


def _positive(value: Any, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValidationError(where, f"must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or x <= 0:
        raise ValidationError(where, f"must be a positive number, got {value!r}")
    return x
