#!/usr/bin/env python3
"""Jobs/s from submit to pods bound, and submit -> Running latency, on the REAL Kubernetes API server.

Starts a real `gpufleet serve --executor kubernetes` (SQLite, temp home, its own namespace) against the
cluster of scripts/dev-k8s.sh, and watches the namespace's pods itself (event arrival times on this
host). Jobs are submitted through the SDK client, which is what `gpufleet submit` calls; a few are
also submitted through the real `gpufleet submit` CLI (that adds a Python process start per job).
Baseline measured in the same run: the same pods created DIRECTLY as batch/v1 Jobs with the
official client (no gpufleet): the floor any Kubernetes front-end pays. Prints one JSON object.

    source scripts/dev-env.sh; python bench/k8s_submit.py [--rounds 3] [--jobs 32] [--cli-jobs 5]
        [--launch-concurrency N]
Besides the back-to-back rounds, paced rounds (`--pace` jobs/s, the same arrivals for both paths)
measure each path's own cost without the queueing that bursts cause downstream (see `paced`).
CPU: `server_cpu_s` is the gpufleet server's CPU over its rounds, `bench_cpu_s` this process's
(its watches and client) over either path's rounds, beside their `wall_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import yaml
from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpufleet.client.http import Client  # noqa: E402

BIN = Path(sys.executable).parent / "gpufleet"
IMAGE = "registry.invalid/bench:1"


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 4)


class PodWatch:
    """Arrival time (this host's clock) of the first event showing each pod bound / Running, by key."""

    def __init__(self, core: client.CoreV1Api, ns: str, key_label: str):
        self.core, self.ns, self.key_label = core, ns, key_label
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        rv = json.loads(self.core.list_namespaced_pod(self.ns, _preload_content=False).data)["metadata"]["resourceVersion"]
        while True:
            resp = self.core.list_namespaced_pod(self.ns, watch=True, resource_version=rv, timeout_seconds=300,
                                                 allow_watch_bookmarks=True, _preload_content=False)
            for line in iter_resp_lines(resp):
                now = time.time()
                ev = json.loads(line)
                obj = ev["object"]
                rv = obj["metadata"].get("resourceVersion", rv)
                key = (obj["metadata"].get("labels") or {}).get(self.key_label)
                if ev["type"] in ("BOOKMARK", "DELETED") or key is None:
                    continue
                with self.cv:
                    if obj["spec"].get("nodeName"):
                        self.bound.setdefault(key, now)
                    if (obj.get("status") or {}).get("phase") == "Running":
                        self.running.setdefault(key, now)
                    self.cv.notify_all()

    def wait(self, keys: list[str], what: str, timeout: float = 120.0) -> None:
        d = self.running if what == "running" else self.bound
        with self.cv:
            if not self.cv.wait_for(lambda: all(k in d for k in keys), timeout):
                missing = [k for k in keys if k not in d]
                raise TimeoutError(f"{len(missing)} pods never {what}: {missing[:5]}")


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def start_server(home: Path, kubeconfig: str, ns: str, concurrency: int | None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cfg = home / "server.yaml"
    # health checks off: they need NVML on the nodes, which this server cannot reach (no agent on K8s
    # nodes); with them on, every node is drained as unhealthy and nothing runs.
    settings = {"kubernetes": {"kubeconfig": kubeconfig, "namespace": ns, "instance": "gfb"},
                "health": {"nvml": "off", "checks": {"gpu_inventory": {"enabled": False}}}}
    if concurrency is not None:
        settings["launch_concurrency"] = concurrency
    cfg.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "GPUFLEET_HOME": str(home)}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--executor", "kubernetes",
                             "--config", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError((home / "server.log").read_text()[-2000:])
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec(i: int, run_s: float) -> dict:
    return {"command": ["python", "train.py"], "gpus": 1, "image": IMAGE, "name": f"bench-{i}",
            "env": {"FAKE_KUBELET_RUN_SECONDS": str(run_s)}}


def _arrive(t0: float, i: int, pace: float) -> None:
    """Paced rounds: the i-th job arrives at t0 + i/pace (pace 0: back to back)."""
    if pace > 0:
        time.sleep(max(0.0, t0 + i / pace - time.time()))


def gpufleet_round(c: Client, watch: PodWatch, n: int, run_s: float, pace: float = 0.0) -> dict:
    """Submit n one-GPU jobs back to back (or `pace` a second); wait until all pods are Running."""
    submitted: dict[str, float] = {}
    t0 = time.time()
    for i in range(n):
        _arrive(t0, i, pace)
        t = time.time()
        job = c.submit(spec(i, run_s))
        submitted[str(job.id)] = t
    t_submitted = time.time()
    keys = list(submitted)
    watch.wait(keys, "bound")
    t_bound = max(watch.bound[k] for k in keys)
    watch.wait(keys, "running")
    return {"submit_s": t_submitted - t0, "bound_s": t_bound - t0,
            "latency": [watch.running[k] - submitted[k] for k in keys],
            "bind_latency": [watch.bound[k] - submitted[k] for k in keys]}


def direct_round(batch: client.BatchV1Api, ns: str, watch: PodWatch, n: int, run_s: float,
                 pace: float = 0.0) -> dict:
    """The baseline: the same pods as batch/v1 Jobs created directly (kube-scheduler places them)."""
    created: dict[str, float] = {}
    tag = uuid.uuid4().hex[:6]
    t0 = time.time()
    for i in range(n):
        _arrive(t0, i, pace)
        key = f"{tag}-{i}"
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"direct-{key}"},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"labels": {"bench-key": key}},
                    "spec": {"restartPolicy": "Never", "containers": [{
                        "name": "main", "image": IMAGE, "command": ["python", "train.py"],
                        "env": [{"name": "FAKE_KUBELET_RUN_SECONDS", "value": str(run_s)}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
        created[key] = time.time()
        batch.create_namespaced_job(ns, body, _preload_content=False)
    t_created = time.time()
    keys = list(created)
    watch.wait(keys, "bound")
    t_bound = max(watch.bound[k] for k in keys)
    watch.wait(keys, "running")
    return {"submit_s": t_created - t0, "bound_s": t_bound - t0,
            "latency": [watch.running[k] - created[k] for k in keys],
            "bind_latency": [watch.bound[k] - created[k] for k in keys]}


def cli_latency(url: str, home: Path, watch: PodWatch, n: int) -> list[float]:
    env = {**os.environ, "GPUFLEET_HOME": str(home), "GPUFLEET_URL": url}
    out = []
    for i in range(n):
        t = time.time()
        r = subprocess.run([str(BIN), "submit", "--json", "--gpus", "1", "--image", IMAGE,
                            "-e", "FAKE_KUBELET_RUN_SECONDS=1", "--", "python", "train.py"],
                           env=env, capture_output=True, text=True, check=True)
        key = str(json.loads(r.stdout)["id"])
        watch.wait([key], "running")
        out.append(watch.running[key] - t)
    return out


def summarize(rounds: list[dict], n: int) -> dict:
    lat = [x for r in rounds for x in r["latency"]]
    bind = [x for r in rounds for x in r["bind_latency"]]
    return {"jobs_per_s_submit_to_bound": round(n * len(rounds) / sum(r["bound_s"] for r in rounds), 1),
            "jobs_per_s_submit_only": round(n * len(rounds) / sum(r["submit_s"] for r in rounds), 1),
            "submit_to_bound_p50_s": pct(bind, 50), "submit_to_running_p50_s": pct(lat, 50),
            "submit_to_running_p99_s": pct(lat, 99), "samples": len(lat)}


def paced(gp: list[dict], dp: list[dict], a: argparse.Namespace) -> dict:
    """The same arrivals for both paths (`--pace` jobs a second): the back-to-back rounds hand
    the API server, kube-scheduler and the (serial) fake kubelet bursts as fast as each path accepts
    them, so there the latency is mostly queueing behind those; here it is each path's own cost."""
    if not gp:
        return {}
    gs, ds = summarize(gp, a.jobs), summarize(dp, a.jobs)
    return {"paced_jobs_per_s": a.pace, "paced_gpufleet": gs, "paced_direct": ds,
            "paced_ratio_p50_latency": round(gs["submit_to_running_p50_s"] / ds["submit_to_running_p50_s"], 2),
            "paced_ratio_p50_bind_latency": round(gs["submit_to_bound_p50_s"] / ds["submit_to_bound_p50_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=32, help="jobs per round (<= free GPUs: no queueing)")
    ap.add_argument("--run-seconds", type=float, default=2.0)
    ap.add_argument("--cli-jobs", type=int, default=5)
    ap.add_argument("--launch-concurrency", type=int, default=None, help="the server's (default: its own)")
    ap.add_argument("--pace", type=float, default=10.0,
                    help="jobs/s of the extra paced rounds, the same for both paths (0: none)")
    a = ap.parse_args()
    kubeconfig = os.environ.get("GPUFLEET_TEST_KUBECONFIG")
    if not kubeconfig:
        sys.exit("GPUFLEET_TEST_KUBECONFIG unset: scripts/dev-k8s.sh up && source scripts/dev-env.sh")
    api = config.new_client_from_config(config_file=kubeconfig)
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    ns = f"gfbench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    home = Path(tempfile.mkdtemp(prefix="gpufleet-k8s-bench-"))
    proc, url = start_server(home, kubeconfig, ns, a.launch_concurrency)
    try:
        token = (home / "admin.token").read_text().strip()
        gw, dw = PodWatch(core, ns, "gpufleet.io/job-id"), PodWatch(core, ns, "bench-key")
        time.sleep(0.5)  # watches established
        server = psutil.Process(proc.pid)
        with Client(url, token) as c:
            g = []
            cpu0, bench0, wall0 = _cpu(server), time.process_time(), time.perf_counter()
            for _ in range(a.rounds):
                g.append(gpufleet_round(c, gw, a.jobs, a.run_seconds))
                time.sleep(a.run_seconds + 1.5)  # let them end so the next round does not queue
            gp = []
            for _ in range(a.rounds if a.pace > 0 else 0):
                gp.append(gpufleet_round(c, gw, a.jobs, a.run_seconds, a.pace))
                time.sleep(a.run_seconds + 1.5)
            cpu = {"server_cpu_s": round(_cpu(server) - cpu0, 2),
                   "bench_cpu_s": round(time.process_time() - bench0, 2),
                   "wall_s": round(time.perf_counter() - wall0, 2)}
            cli = cli_latency(url, home, gw, a.cli_jobs)
        time.sleep(2.0)
        d = []
        bench0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(a.rounds):
            d.append(direct_round(batch, ns, dw, a.jobs, a.run_seconds))
            time.sleep(a.run_seconds + 1.5)
        dp = []
        for _ in range(a.rounds if a.pace > 0 else 0):
            dp.append(direct_round(batch, ns, dw, a.jobs, a.run_seconds, a.pace))
            time.sleep(a.run_seconds + 1.5)
        gs, ds = summarize(g, a.jobs), summarize(d, a.jobs)
        gs.update(cpu)
        ds.update(bench_cpu_s=round(time.process_time() - bench0, 2), wall_s=round(time.perf_counter() - wall0, 2))
        print(json.dumps({
            "bench": "k8s_submit", "kubernetes": client.VersionApi(api).get_code().git_version,
            "jobs_per_round": a.jobs, "rounds": a.rounds, "gpus_per_job": 1,
            "gpufleet": gs, "direct_k8s_baseline": ds,
            "cli_submit_to_running_p50_s": pct(cli, 50), "cli_submit_to_running_max_s": pct(cli, 100),
            "ratio_throughput_gpufleet_vs_direct": round(gs["jobs_per_s_submit_to_bound"]
                                                         / ds["jobs_per_s_submit_to_bound"], 3),
            "ratio_p50_latency_gpufleet_vs_direct": round(gs["submit_to_running_p50_s"]
                                                          / ds["submit_to_running_p50_s"], 2),
            "ratio_p50_bind_latency_gpufleet_vs_direct": round(gs["submit_to_bound_p50_s"]
                                                               / ds["submit_to_bound_p50_s"], 2),
            **paced(gp, dp, a),
            "note": "gpufleet = SDK client (what `gpufleet submit` calls) -> API -> control loop -> executor "
                    "-> API server -> kube-scheduler -> fake kubelet; times are watch-event arrivals here",
        }, indent=1))
    finally:
        proc.terminate()
        proc.wait(10)
        core.delete_namespace(ns, _preload_content=False)
        api.close()


if __name__ == "__main__":
    main()
