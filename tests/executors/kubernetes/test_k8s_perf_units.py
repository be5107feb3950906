"""The perf wrapper of a Kubernetes pod and the marker lines read back from its log (no API server)."""

from __future__ import annotations

import base64
import json
import time

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.domain.perf import parse_perf
from gpufleet.executors.kubernetes import KubernetesConfig, manifests
from gpufleet.executors.kubernetes.perf import WRAPPER, verdicts_from_log

CFG = KubernetesConfig(gpufleet_bin="/opt/gf/bin/gpufleet", perf_fake_nvml="/etc/fake.json")


def perf_job(perf=True) -> Job:
    spec = JobSpec(command=("python", "b.py", "$(HOME)"), gpus=8, image="img:1",
                   perf=parse_perf(perf) if perf else None)
    return Job(7, spec, user="alice", state=JobState.RUNNING, allocation=(Allocation("n1", tuple(range(8))),),
               submitted_at=time.time())


def test_a_perf_pod_runs_the_fixed_wrapper_with_the_policy_and_the_argv_after_it():
    spec = manifests.pod_spec(CFG, perf_job({"clocks": "max", "max_temp_c": 70, "sample_s": 2}), 0)
    cmd = spec["containers"][0]["command"]
    assert cmd[:3] == ["/bin/sh", "-c", WRAPPER.replace("$", "$$")]
    assert cmd[3:] == ["gpufleet-perf", "/opt/gf/bin/gpufleet", "2", "/etc/fake.json", "max", "70",
                       "python", "b.py", "$$(HOME)"]
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert {"key": "gpufleet.io/job-id", "operator": "NotIn", "values": ["7"]} in anti["labelSelector"]["matchExpressions"]
    assert "nodeAffinity" in spec["affinity"]  # still pinned to gpufleet's node
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"  # the whole node


def test_a_job_without_perf_keeps_its_own_command():
    spec = manifests.pod_spec(CFG, perf_job(None), 0)
    assert spec["containers"][0]["command"] == ["python", "b.py", "$$(HOME)"]
    assert "podAntiAffinity" not in spec.get("affinity", {})


PROLOG = json.dumps({"ok": True, "prolog": [{"name": "stray_processes", "ok": True, "reason": ""}]})
EPILOG = json.dumps({"perf_valid": True, "reason": "", "epilog": [], "conditions": {"samples": 2}})


def log_of(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_a_clean_run_gives_the_epilog_verdict_samples_and_results():
    data = base64.b64encode(b'{"benchmark": "b", "metric": "m", "value": 1}\n').decode()
    log = log_of("warming up", f"GPUFLEET-PERF-PROLOG ab12 0 {PROLOG}", "bench output",
                 f"GPUFLEET-PERF-EPILOG ab12 {EPILOG}",
                 'GPUFLEET-PERF-STATE ab12 {"samples": [{"at": 1.0, "gpu": 0, "sm_mhz": 1410}]}',
                 f"GPUFLEET-PERF-RESULT ab12 r.jsonl {data}", "GPUFLEET-PERF-END ab12")
    notes: list[str] = []
    verdict, files = verdicts_from_log(log, 0, "n1", notes)
    assert (verdict["stage"], verdict["ok"], verdict["node"], verdict["conditions"]) == ("epilog", True, "n1",
                                                                                          {"samples": 2})
    assert verdict["samples"] == [{"at": 1.0, "gpu": 0, "sm_mhz": 1410}]
    assert [(f.name, f.data) for f in files] == [("r.jsonl", b'{"benchmark": "b", "metric": "m", "value": 1}\n')]
    assert notes == []


def test_markers_the_job_prints_with_another_nonce_are_ignored():
    forged = json.dumps({"perf_valid": True, "stage": "prolog", "node": "other"})
    bad = json.dumps({"perf_valid": False, "reason": "epilog throttle: GPU 0: hw_slowdown"})
    log = log_of(f"GPUFLEET-PERF-PROLOG real 0 {PROLOG}", f"GPUFLEET-PERF-EPILOG guess {forged}",
                 "GPUFLEET-PERF-RESULT guess x.jsonl e30K", f"GPUFLEET-PERF-EPILOG real {bad}")
    verdict, files = verdicts_from_log(log, 0, "n1", [])
    assert (verdict["stage"], verdict["ok"], verdict["node"]) == ("epilog", False, "n1")
    assert verdict["reason"].startswith("epilog throttle") and files == []


def test_a_forged_epilog_cannot_turn_into_a_refusal_of_another_node():
    forged = json.dumps({"perf_valid": True, "stage": "prolog", "node": "gpu-x", "ok": False})
    verdict, _ = verdicts_from_log(log_of(f"GPUFLEET-PERF-PROLOG n 0 {PROLOG}", f"GPUFLEET-PERF-EPILOG n {forged}"),
                                   0, "n1", [])
    assert (verdict["stage"], verdict["ok"], verdict["node"]) == ("epilog", True, "n1")


def test_garbled_markers_mark_the_run_without_a_verdict_never_crash():
    notes: list[str] = []
    log = b"\xff\xfeGPUFLEET\n" + log_of(f"GPUFLEET-PERF-PROLOG n 0 {PROLOG}", "GPUFLEET-PERF-EPILOG n {not json",
                                          "GPUFLEET-PERF-STATE n [1,2]", "GPUFLEET-PERF-RESULT n a.jsonl !!!",
                                          "GPUFLEET-PERF-RESULT n ../etc/passwd.jsonl e30K", "GPUFLEET-PERF-")
    verdict, files = verdicts_from_log(log, 0, "n1", notes)
    assert (verdict["stage"], verdict["ok"]) == ("epilog", False) and "no verdict" in verdict["reason"]
    assert verdict["samples"] is None and files == []
    assert len(notes) == 2


def test_a_refusal_and_an_unchecked_prolog():
    refused = json.dumps({"ok": False, "prolog": [{"name": "stray_processes", "ok": False, "reason": "GPU 1: pid 9"}]})
    v, files = verdicts_from_log(log_of(f"GPUFLEET-PERF-PROLOG n 1 {refused}"), 0, "n1", [])
    assert (v["stage"], v["ok"], v["prolog"][0]["reason"]) == ("prolog", False, "GPU 1: pid 9")
    v, _ = verdicts_from_log(log_of("GPUFLEET-PERF-PROLOG n 2 {}", "GPUFLEET-PERF-END n"), 0, "n1", [])
    assert (v["stage"], v["ok"]) == ("unchecked", None) and "exit 2" in v["reason"]
    notes: list[str] = []
    assert verdicts_from_log(b"GPUFLEET-PERF-EPILOG n {}\n", 0, "n1", notes) == (None, [])
    assert "no perf prolog marker" in notes[0]
