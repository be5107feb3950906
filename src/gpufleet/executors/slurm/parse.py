"""Pure parsing of what Slurm prints: `squeue --json` / `sinfo --json` (OpenAPI data v0.0.38, the
same objects slurmrestd serves), `sacct -P` text, hostlists and GRES strings. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from gpufleet.domain import Gpu, Node, NodeKind, NodeState
from gpufleet.executors.base import Phase

# Job states (Slurm 22.05 names) grouped by what gpufleet makes of them.
PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "POWER_UP_NODE"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING", "UPDATE_DB"}
)
ENDED_STATES: Mapping[str, Phase] = {
    "COMPLETED": Phase.SUCCEEDED,
    "FAILED": Phase.FAILED,
    "TIMEOUT": Phase.TIMEOUT,
    "DEADLINE": Phase.TIMEOUT,
    # a node of the job failed / could not boot: a fault of the infrastructure, not of the
    # command: LOST, which restarts the job under its default --restart on-node-fault
    "NODE_FAIL": Phase.LOST,
    "OUT_OF_MEMORY": Phase.FAILED,
    "BOOT_FAIL": Phase.LOST,
    "SPECIAL_EXIT": Phase.FAILED,
    "PREEMPTED": Phase.PREEMPTED,
    "CANCELLED": Phase.CANCELLED,
    "REVOKED": Phase.CANCELLED,
}
LOST_WHY = {"NODE_FAIL": "a node of the job failed", "BOOT_FAIL": "a node of the job failed to boot"}
# Jobs in these states still hold their GPUs.
HOLDING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"})


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One Slurm job as gpufleet needs it."""

    job_id: int
    name: str
    state: str  # base state, upper case: RUNNING, COMPLETED, TIMEOUT ...
    exit_code: int | None = None  # 128+signal when killed by a signal
    reason: str = ""  # Slurm's state reason (pending reason, NonZeroExitCode, ...)
    nodes: tuple[str, ...] = ()
    gpus: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # node -> GPU indices
    start_time: float | None = None
    end_time: float | None = None
    submit_time: float | None = None
    comment: str = ""
    admin_comment: str = ""
    account: str = ""


# ------------------------------------------------------------------------------------- hostlists


def expand_hostlist(text: str | None) -> tuple[str, ...]:
    """`gpu[01-03,07],login1` -> (gpu01, gpu02, gpu03, gpu07, login1). Keeps zero padding."""
    if not text or text in ("(null)", "None", "None assigned"):
        return ()
    out: list[str] = []
    for item in _split_top(text):
        m = re.fullmatch(r"([^\[\]]*)\[([^\]]+)\](.*)", item)
        if not m:
            out.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                out.extend(expand_hostlist(f"{prefix}{lo}{suffix}"))
                continue
            for i in range(int(lo), int(hi) + 1):
                out.extend(expand_hostlist(f"{prefix}{str(i).zfill(len(lo))}{suffix}"))
    return tuple(out)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or parentheses."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        depth += ch in "[("
        depth -= ch in "])"
        cur.append(ch)
    items.append("".join(cur))
    return [i for i in items if i]


def compress_hostlist(names: list[str] | tuple[str, ...]) -> str:
    """Plain comma list (Slurm accepts it everywhere a hostlist is expected)."""
    return ",".join(names)


# ----------------------------------------------------------------------------------------- GRES


@dataclass(frozen=True, slots=True)
class GresEntry:
    model: str  # "" when the GRES has no type
    count: int
    sockets: tuple[int, ...] = ()  # socket affinity from "(S:0-1)"
    indices: tuple[int, ...] = ()  # from "(IDX:0-1,4)"


def parse_int_ranges(text: str) -> tuple[int, ...]:
    """`0-2,5` -> (0, 1, 2, 5); `N/A` -> ()."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part or not part[0].isdigit():
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def parse_gres(text: str | None, name: str = "gpu") -> list[GresEntry]:
    """GPU entries of a GRES string: `gpu:a100:8(S:0-1)`, `gpu:a100:2(IDX:0-1)`, `gpu:4`, `gres:gpu:l4:1`."""
    if not text or text in ("(null)", "N/A"):
        return []
    entries = []
    for item in _split_top(text):
        if item.startswith("gres:"):
            item = item[len("gres:"):]
        m = re.fullmatch(r"([^:(]+)(?::([^:(]+))?(?::(\d+))?(?:\((.*)\))?", item.strip())
        if not m or m.group(1) != name:
            continue
        model, count, extra = m.group(2) or "", m.group(3), m.group(4) or ""
        if count is None and model.isdigit():
            model, count = "", model
        sockets = indices = ()
        for tag in extra.split(")("):
            if tag.startswith("S:"):
                sockets = parse_int_ranges(tag[2:])
            elif tag.startswith("IDX:"):
                indices = parse_int_ranges(tag[4:])
        entries.append(GresEntry(model.lower(), int(count or 1), sockets, indices))
    return entries


def gpus_of_node(gres: str | None, sockets_on_node: int = 1) -> tuple[Gpu, ...]:
    """The node's GPUs, numbered across entries in order. `group` = the socket the GPU hangs off
    (gres.conf `Cores=`): an entry spread over k sockets is split evenly, first half on the first."""
    gpus: list[Gpu] = []
    for entry in parse_gres(gres):
        for i in range(entry.count):
            if len(entry.sockets) > 1:
                group = entry.sockets[i * len(entry.sockets) // entry.count]
            elif entry.sockets:
                group = entry.sockets[0]
            else:
                group = 0
            gpus.append(Gpu(index=len(gpus), model=entry.model or "gpu", group=group))
    return tuple(gpus)


def gpu_indices(gres: str | None) -> tuple[int, ...]:
    """Indices in use from `gres_used` / `gres_detail` (`gpu:a100:2(IDX:0-1)`)."""
    return tuple(sorted({i for e in parse_gres(gres) for i in e.indices}))


# ----------------------------------------------------------------------------------------- jobs


def num(value):
    """A number in either shape: v0.0.38 plain, v0.0.39+ `{"set": bool, "number": n}`."""
    if isinstance(value, dict):
        return value.get("number") if value.get("set", True) and not value.get("infinite") else None
    return value


def first(value) -> str:
    """A state in either shape: v0.0.38 "RUNNING", v0.0.39+ ["RUNNING", "COMPLETING"]."""
    if isinstance(value, (list, tuple)):
        return str(value[0]) if value else ""
    return str(value or "")


def decode_exit(raw) -> int | None:
    """A wait(2) status as Slurm 22.05 stores it -> exit code (128+signal when signalled); also
    reads v0.0.39+'s `{"status": [...], "return_code": {...}, "signal": {"id": {...}}}`."""
    if isinstance(raw, dict):
        sig = num((raw.get("signal") or {}).get("id")) or 0
        if sig:
            return 128 + int(sig)
        code = num(raw.get("return_code"))
        return None if code is None else int(code)
    raw = num(raw)
    if raw is None:
        return None
    sig = raw & 0x7F
    return 128 + sig if sig else (raw >> 8) & 0xFF


def job_from_json(d: Mapping) -> SlurmJob:
    """One element of `squeue --json`'s "jobs" (also slurmrestd /slurm/v0.0.38/jobs)."""
    nodes = expand_hostlist(d.get("nodes"))
    details = list(d.get("gres_detail") or ())
    gpus = {n: gpu_indices(details[i]) for i, n in enumerate(nodes) if i < len(details)}
    state = (first(d.get("job_state")) or "UNKNOWN").upper().split()[0]
    return SlurmJob(
        job_id=int(d["job_id"]),
        name=d.get("name") or "",
        state=state,
        exit_code=decode_exit(d.get("exit_code")) if state not in PENDING_STATES | RUNNING_STATES else None,
        reason=_reason(d.get("state_reason")),
        nodes=nodes,
        gpus=gpus,
        start_time=_time(d.get("start_time")),
        end_time=_time(d.get("end_time")),
        submit_time=_time(d.get("submit_time")),
        comment=d.get("comment") or "",
        admin_comment=d.get("admin_comment") or "",
        account=d.get("account") or "",
    )


def _reason(value) -> str:
    return "" if not value or value == "None" else str(value)


def _time(value) -> float | None:
    value = num(value)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


SACCT_FIELDS = ("JobIDRaw", "JobName", "State", "ExitCode", "Start", "End", "Submit", "Reason", "NodeList",
                "Account", "Comment", "AdminComment")


def jobs_from_sacct(text: str) -> list[SlurmJob]:
    """`sacct -X -n -P -o <SACCT_FIELDS>` output. (sacct --json of 22.05 reports exit code 0 for
    failed jobs, so the text form is parsed instead.)"""
    jobs = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS) or not parts[0].isdigit():
            continue
        f = dict(zip(SACCT_FIELDS, parts))
        state = f["State"].split()[0].upper() if f["State"] else "UNKNOWN"
        code, _, sig = f["ExitCode"].partition(":")
        exit_code = 128 + int(sig) if sig.isdigit() and int(sig) else int(code) if code.isdigit() else None
        jobs.append(SlurmJob(
            job_id=int(f["JobIDRaw"]), name=f["JobName"], state=state,
            exit_code=None if state in PENDING_STATES | RUNNING_STATES else exit_code,
            reason=_reason(f["Reason"]), nodes=expand_hostlist(f["NodeList"]),
            start_time=_iso(f["Start"]), end_time=_iso(f["End"]), submit_time=_iso(f["Submit"]),
            account=f["Account"], comment=f["Comment"], admin_comment=f["AdminComment"],
        ))
    return jobs


def _iso(text: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def phase_of(job: SlurmJob, timeout_marker: str = "") -> tuple[Phase, int | None, str]:
    """(phase, exit code, reason) for one Slurm job. A job that gpufleet cancelled at its exact time
    limit carries `timeout_marker` in its admin comment and ends as TIMEOUT, like Slurm's own."""
    state = job.state
    if state in PENDING_STATES:
        return Phase.STARTING, None, f"Slurm: {state} ({job.reason})" if job.reason else f"Slurm: {state}"
    if state in RUNNING_STATES:
        return Phase.RUNNING, None, "" if state == "RUNNING" else f"Slurm: {state}"
    phase = ENDED_STATES.get(state)
    if phase is None:
        return Phase.RUNNING, None, f"Slurm: unknown state {state}"
    if phase is Phase.CANCELLED and timeout_marker and timeout_marker in job.admin_comment:
        return Phase.TIMEOUT, job.exit_code, "TimeLimit (enforced by gpufleet)"
    if phase is Phase.SUCCEEDED:
        return phase, job.exit_code or 0, ""
    reasons = {
        Phase.TIMEOUT: "TimeLimit",
        Phase.PREEMPTED: "Preempted in Slurm",
        Phase.CANCELLED: "cancelled in Slurm",
        Phase.LOST: f"Slurm: {state} ({LOST_WHY.get(state, 'lost')})",
    }
    reason = reasons.get(phase) or (state if state != "FAILED" else job.reason or "NonZeroExitCode")
    return phase, job.exit_code, reason


# ---------------------------------------------------------------------------------------- nodes

DOWN_BASE_STATES = frozenset({"down", "future", "unknown", "error", "power_down", "powered_down"})
# NOT_RESPONDING alone is not DOWN: Slurm itself waits SlurmdTimeout before it downs a node (and
# every node is briefly "not responding" after slurmctld restarts); the label slurm.state shows it.
DOWN_FLAGS = frozenset({"POWERED_DOWN", "POWER_DOWN", "REBOOT_ISSUED", "POWERING_UP"})
DRAIN_FLAGS = frozenset({"DRAIN", "DRAINING", "DRAINED", "FAIL"})


def _node_state_parts(d: Mapping) -> tuple[str, set[str]]:
    """(base state lower case, flags upper case) from v0.0.38 ("idle" + state_flags) or v0.0.39+
    (state: ["IDLE", "DRAIN"])."""
    raw = d.get("state")
    flags = {str(f).upper() for f in d.get("state_flags") or ()}
    if isinstance(raw, (list, tuple)):
        flags |= {str(f).upper() for f in raw[1:]}
    return (first(raw) or "unknown").lower(), flags


def node_state(d: Mapping) -> NodeState:
    base, flags = _node_state_parts(d)
    if base in DOWN_BASE_STATES or flags & DOWN_FLAGS:
        return NodeState.DOWN
    if base in ("drained", "draining", "fail", "failing") or flags & DRAIN_FLAGS:
        return NodeState.DRAIN
    return NodeState.UP


def labels_of(d: Mapping) -> dict[str, str]:
    """Slurm features -> labels: `rack:r1` -> rack=r1, `nvlink` -> nvlink=true."""
    labels: dict[str, str] = {}
    feats = d.get("active_features") or d.get("features") or ""
    for feat in str(feats).split(","):
        feat = feat.strip()
        if not feat:
            continue
        key, sep, value = feat.partition(":")
        labels[key] = value if sep else "true"
    labels["slurm.features"] = str(feats)
    labels["slurm.partitions"] = ",".join(d.get("partitions") or ())
    state, flags = _node_state_parts(d)
    labels["slurm.state"] = "+".join([state, *sorted(f.lower() for f in flags)])
    return labels


def node_from_json(d: Mapping, now: float) -> Node:
    """One element of `sinfo --json`'s "nodes" (also slurmrestd /slurm/v0.0.38/nodes)."""
    labels = labels_of(d)
    kind = NodeKind.DESKTOP if labels.get("kind") == "desktop" else NodeKind.SERVER
    if labels.get("kind") == "embedded":
        kind = NodeKind.EMBEDDED
    state = node_state(d)
    return Node(
        name=d["name"],
        kind=kind,
        arch=d.get("architecture") or "x86_64",
        cpus=int(num(d.get("cpus")) or 0),
        mem_mb=int(num(d.get("real_memory")) or 0),
        labels=labels,
        gpus=gpus_of_node(d.get("gres"), int(num(d.get("sockets")) or 1)),
        state=state,
        reason=(d.get("reason") or "") if state is not NodeState.UP else "",
        address=d.get("address") or d.get("hostname") or d["name"],
        updated_at=now,
    )
