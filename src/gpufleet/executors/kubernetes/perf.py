"""Clean-room perf runs inside a Kubernetes pod, reported back through the pod's log.

For a job with `spec.perf` every rank's container command is wrapped in a fixed POSIX `sh` script
(`WRAPPER`, no job text in it: the settings and the job's argv arrive as positional arguments):

    gpufleet perf prolog --state S [--clocks ..] [--max-temp ..]   exit 1 = refused: the command does
                                                                   not run, the pod exits 75
    gpufleet perf sample --every N --state S &                     beside the command
    the command (SIGTERM forwarded), with $GPUFLEET_RESULTS_DIR
    gpufleet perf epilog --state S

The state and results live in a fresh `mktemp -d` folder under $TMPDIR (or /tmp) of the container,
gone with it; so each verdict, the samples and each results file are printed as one marker line in
the pod's log (no token goes into the pod):

    GPUFLEET-PERF-PROLOG <nonce> <rc> <json>      GPUFLEET-PERF-EPILOG <nonce> <json>
    GPUFLEET-PERF-STATE <nonce> <json>            GPUFLEET-PERF-RESULT <nonce> <name> <base64|->
    GPUFLEET-PERF-END <nonce>

`verdicts_from_log` reads them back. The nonce is drawn in the pod before the command starts and
printed in the first PROLOG line, which the command cannot precede; a later marker with another nonce
is ignored (a job echoing marker lines does not replace the real ones). This is no defence against a
job that wants to forge its verdict: the wrapper runs as the job's own account, as on Slurm.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from gpufleet.domain import Job
from gpufleet.executors.base import ResultFile
from gpufleet.executors.kubernetes import names as n

PREFIX = "GPUFLEET-PERF-"
REFUSED_EXIT = 75
LOG_MAX = 64 << 20  # bytes of a pod log read for the markers
TAIL_LINES = 400
MAX_RESULT_FILE = 16 << 20  # bytes of one results file printed into the log
SUFFIXES = (".jsonl", ".json", ".ndjson", ".xml")
EPILOG_KEYS = ("perf_valid", "reason", "epilog", "conditions", "started_at", "ended_at")  # taken from the epilog

WRAPPER = r"""gf_bin=$1 gf_every=$2 gf_fake=$3 gf_clocks=$4 gf_temp=$5
shift 5
gf_nonce=$(od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')
gf_nonce=${gf_nonce:-0}
gf_step() {
  gf_s=$1; shift
  if [ -n "$gf_fake" ]; then "$gf_bin" perf "$gf_s" --state "$gf_d/state.json" --fake-nvml "$gf_fake" "$@"
  else "$gf_bin" perf "$gf_s" --state "$gf_d/state.json" "$@"; fi
}
gf_line() { tr -d '\n\r' <"$1" 2>/dev/null; }
gf_report() {
  for gf_f in "$gf_d/results"/*; do
    [ -f "$gf_f" ] && [ ! -L "$gf_f" ] || continue
    case "$gf_f" in *.jsonl|*.json|*.ndjson|*.xml) ;; *) continue ;; esac
    if [ "$(wc -c <"$gf_f")" -le 16777216 ]; then
      printf 'GPUFLEET-PERF-RESULT %s %s %s\n' "$gf_nonce" "${gf_f##*/}" "$(base64 <"$gf_f" | tr -d '\n')"
    else printf 'GPUFLEET-PERF-RESULT %s %s -\n' "$gf_nonce" "${gf_f##*/}"; fi
  done
  printf 'GPUFLEET-PERF-END %s\n' "$gf_nonce"
}
gf_run() {
  trap 'kill -TERM "$gf_child" 2>/dev/null' TERM INT
  GPUFLEET_RESULTS_DIR="$gf_d/results" "$@" &
  gf_child=$!
  gf_rc=0
  while :; do
    wait "$gf_child"; gf_rc=$?
    kill -0 "$gf_child" 2>/dev/null || break
  done
}
gf_d=$(mktemp -d "${TMPDIR:-/tmp}/gpufleet-perf.XXXXXX") && mkdir "$gf_d/results" || {
  printf 'GPUFLEET-PERF-PROLOG %s 2 {}\n' "$gf_nonce"
  echo "gpufleet: no temporary folder for the perf steps: the command runs unchecked" >&2
  exec "$@"
}
gf_step prolog ${gf_clocks:+--clocks "$gf_clocks"} ${gf_temp:+--max-temp "$gf_temp"} >"$gf_d/prolog.json"
gf_rc=$?
printf 'GPUFLEET-PERF-PROLOG %s %s %s\n' "$gf_nonce" "$gf_rc" "$(gf_line "$gf_d/prolog.json")"
if [ "$gf_rc" = 1 ]; then
  echo "gpufleet: the perf prolog refused this node: the command did not run" >&2
  rm -rf "$gf_d"
  exit 75
fi
if [ "$gf_rc" != 0 ]; then
  gf_run "$@"
  gf_report
  rm -rf "$gf_d"
  exit "$gf_rc"
fi
gf_step sample --every "$gf_every" >/dev/null 2>&1 &
gf_sampler=$!
gf_run "$@"
kill "$gf_sampler" 2>/dev/null
wait "$gf_sampler" 2>/dev/null
gf_step epilog >"$gf_d/epilog.json"
printf 'GPUFLEET-PERF-EPILOG %s %s\n' "$gf_nonce" "$(gf_line "$gf_d/epilog.json")"
printf 'GPUFLEET-PERF-STATE %s %s\n' "$gf_nonce" "$(gf_line "$gf_d/state.json")"
gf_report
rm -rf "$gf_d"
exit "$gf_rc"
"""


def wrapped_command(gpufleet_bin: str, fake_nvml: str, job: Job) -> list[str]:
    """The container command of a perf job's rank: the fixed wrapper, its settings, the job's argv."""
    policy = job.spec.perf
    assert policy is not None
    clocks = str(policy.clocks) if policy.clocks and policy.clocks != "as_is" else ""
    temp = str(int(policy.max_temp_c)) if policy.max_temp_c is not None else ""
    return ["/bin/sh", "-c", WRAPPER, "gpufleet-perf", gpufleet_bin or "gpufleet", f"{float(policy.sample_s):g}",
            fake_nvml, clocks, temp, *job.spec.command]


def anti_affinity(instance: str, job: Job) -> dict[str, Any]:
    """No pod of another gpufleet job on the node while this one runs, and this one not where one
    runs (a required anti-affinity is honoured both ways by kube-scheduler). The pod already asks for
    every GPU of the node (gpufleet rounds a perf job up to whole nodes), so no GPU pod fits either."""
    term = {"labelSelector": {"matchExpressions": [
        {"key": n.INSTANCE, "operator": "In", "values": [instance]},
        {"key": n.JOB_ID, "operator": "NotIn", "values": [str(job.id)]}]},
        "topologyKey": "kubernetes.io/hostname"}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def _markers(log: bytes) -> tuple[str, list[list[str]]]:
    """(the nonce of the first PROLOG marker, the later markers that carry it, split)."""
    nonce, out = "", []
    for raw in log.splitlines():
        if not raw.startswith(PREFIX.encode()):
            continue
        line = raw.decode("utf-8", "replace")
        kind, _, rest = line[len(PREFIX):].partition(" ")
        got, _, rest = rest.partition(" ")
        if not nonce:
            if kind != "PROLOG":
                continue
            nonce = got
        if got == nonce:
            out.append([kind, rest])
    return nonce, out


def _obj(text: str) -> dict:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def verdicts_from_log(log: bytes, rank: int, node: str, notes: list[str]) -> tuple[dict | None, list[ResultFile]]:
    """One rank's verdict (SlurmExecutor.perf_verdicts' shape) and its results files, from its pod
    log. None: no prolog marker (the pod never got that far, or it was no perf run)."""
    nonce, marks = _markers(log)
    if not nonce:
        notes.append(f"rank {rank}: no perf prolog marker in the pod log (it ended before the prolog)")
        return None, []
    prolog_rc, _, prolog_json = marks[0][1].partition(" ")
    prolog = _obj(prolog_json)
    verdict: dict = {"rank": rank, "node": node, "prolog": prolog.get("prolog")}
    if prolog_rc == "1":
        verdict.update(stage="prolog", ok=False)
        return verdict, []
    last = {kind: rest for kind, rest in marks[1:]}  # the last of each kind
    files = _results(marks, rank, notes)
    if prolog_rc != "0":
        verdict.update(stage="unchecked", ok=None,
                       reason=f"not checked: gpufleet perf prolog could not run on {node} (exit {prolog_rc[:8]})")
        return verdict, files
    epilog = _obj(last.get("EPILOG", ""))
    if not epilog:
        verdict.update(stage="epilog", ok=False,
                       reason="epilog: no verdict (the run was stopped before the epilog, or it failed)")
    else:
        verdict.update(stage="epilog", **{k: v for k, v in epilog.items() if k in EPILOG_KEYS})
        verdict["ok"] = epilog.get("perf_valid")
        verdict["prolog"] = prolog.get("prolog")
    verdict["samples"] = _obj(last.get("STATE", "")).get("samples")
    return verdict, files


def _results(marks: list[list[str]], rank: int, notes: list[str]) -> list[ResultFile]:
    files: dict[str, ResultFile] = {}
    for kind, rest in marks:
        if kind != "RESULT":
            continue
        name, _, data = rest.rpartition(" ")
        if not name.endswith(SUFFIXES) or "/" in name:
            notes.append(f"rank {rank}: results marker {name[:64]!r}: not a results file name")
            continue
        if data == "-":
            notes.append(f"rank {rank}: {name} is over {MAX_RESULT_FILE >> 20} MiB: not collected")
            continue
        try:
            files[name] = ResultFile(rank=rank, name=name, data=base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            notes.append(f"rank {rank}: {name}: the results marker is not base64: not collected")
    return list(files.values())


def pod_log(core: Any, namespace: str, pod: str, container: str, timeout: float) -> bytes:
    """The whole pod log up to LOG_MAX bytes; a longer one: its head and its last TAIL_LINES lines
    (the prolog marker is at the start, the epilog's at the end)."""
    def read(**kw: Any) -> bytes:
        return core.read_namespaced_pod_log(pod, namespace, container=container, _preload_content=False,
                                            _request_timeout=timeout, **kw).data

    head = read(limit_bytes=LOG_MAX)
    if len(head) < LOG_MAX:
        return head
    return head + b"\n" + read(tail_lines=TAIL_LINES, limit_bytes=LOG_MAX)


def read_ranks(ex: Any, job: Job, attempt: int) -> tuple[list[dict], list[ResultFile], list[str]]:
    """(verdicts, results files, notes) of every rank of run `attempt` of `job`, from the pod logs
    (KubernetesExecutor.perf_verdicts / results). A rank's node is where the API server says its pod
    ran (spec.nodeName), else gpufleet's placement; never what the log claims."""
    from gpufleet.executors.base import attempt_view

    view, _ = attempt_view(job, attempt)
    verdicts: list[dict] = []
    files: list[ResultFile] = []
    notes: list[str] = []
    if view.spec.perf is None:
        return [], [], ["results are collected on Kubernetes only from perf jobs (their wrapper prints them "
                        "into the pod log); other pods run the command as it is"]
    for rank in range(max(len(view.allocation), view.spec.nodes, 1)):
        pod = ex._pod_for(view, rank)
        if pod is None:
            notes.append(f"rank {rank}: no pod (deleted, or it never started)")
            continue
        node = (pod.get("spec") or {}).get("nodeName") or (
            view.allocation[rank].node if rank < len(view.allocation) else "")
        try:
            log = pod_log(ex.core, ex.cfg.namespace, pod["metadata"]["name"], ex.cfg.container_name,
                          ex.cfg.request_timeout_s)
        except Exception as e:  # noqa: BLE001 - an unreadable log leaves the rank without a verdict
            notes.append(f"rank {rank}: pod log not readable: {e}")
            continue
        verdict, got = verdicts_from_log(log, rank, node, notes)
        if verdict is not None and node:
            verdicts.append(verdict)
        files += got
    return verdicts, files, notes
