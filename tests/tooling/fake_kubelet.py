#!/usr/bin/env python3
"""fake_kubelet.py — a stand-in for kubelet (in the spirit of KWOK) for gpufleet's Kubernetes tests.

No container runtime exists here, so pods never really run in containers. This process:

* registers N Node objects with `nvidia.com/gpu` capacity and GPU Feature Discovery labels
  (`nvidia.com/gpu.product`, `.count`, `.memory`), keeps their Lease and Ready condition fresh, and
  advertises itself as the node's kubelet endpoint (`status.daemonEndpoints.kubeletEndpoint.Port`);
* WATCHES pods; for every pod the real kube-scheduler binds to one of its nodes it sets phase
  Running (fake podIP, container statuses), "allocates" GPU indices (annotation
  `fake-kubelet/gpu-ids`), and later ends it by a RULE, read from the pod's annotations and
  overridden by the first container's env (so a test can set it through a job's env):

      fake-kubelet.gpufleet.io/run-seconds  | FAKE_KUBELET_RUN_SECONDS  (default --run-seconds, 3;
                                                                       < 0 = run until deleted)
      fake-kubelet.gpufleet.io/exit-code    | FAKE_KUBELET_EXIT_CODE    (default 0)
      fake-kubelet.gpufleet.io/log          | FAKE_KUBELET_LOG          (text the "container" prints)
      fake-kubelet.gpufleet.io/exec: "true" | FAKE_KUBELET_EXEC=1       run the container's command
                                              on THIS host as a subprocess (image ignored) with the
                                              container's env; exit code and output are real. Run
                                              as root, its hostPath volumeMounts (subPath made when
                                              missing, as kubelet does) are bind-mounted in a
                                              mount namespace of its own onto mountPaths that exist
                                              on this host (others are left out).

  A Node annotated `fake-kubelet.gpufleet.io/not-ready: <message>` is reported NotReady (Ready
  False, that message) at each heartbeat (10 s) until the annotation is removed: a node fault.
  Pods with restartPolicy Always and no rule keep running. `activeDeadlineSeconds` is enforced as
  kubelet does (phase Failed, reason DeadlineExceeded). Graceful deletion is completed.
* serves the kubelet `GET /containerLogs/{ns}/{pod}/{container}` endpoint over HTTPS (client
  certificate required when --client-ca is given), so `kubectl logs` / read_namespaced_pod_log
  really go apiserver -> "kubelet" (tailLines, limitBytes, follow, timestamps supported; this fake
  keeps no time per line, so with timestamps=true every line carries the log file's modification
  time: exact for the newest line, which is what gpufleet's heartbeat asks for with tailLines=1).

Only needs the official `kubernetes` client. Usage:
  fake_kubelet.py --kubeconfig K --nodes 4 --gpus 8 --gpu-product NVIDIA-A100-SXM4-80GB \
      --log-port 10350 --tls-cert C --tls-key K --client-ca CA --state-dir DIR
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import logging
import os
import shlex
import shutil
import signal
import ssl
import re
import subprocess
import sys
import threading
import time
import urllib.parse

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("fake-kubelet")
GPU = "nvidia.com/gpu"
ANN = "fake-kubelet.gpufleet.io/"
ANN_GPUS = "fake-kubelet/gpu-ids"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet does to command, args and env values (third_party/forked/golang/expansion):
    `$(NAME)` -> its value when defined (else left as is), `$$` -> `$`, any other `$x` unchanged."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            close = text.find(")", i + 2) if nxt == "(" else -1
            if nxt == "$":
                out.append("$")
            elif close != -1:
                name = text[i + 2:close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
                continue
            else:
                out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def pod_key(p: dict) -> tuple[str, str]:
    return p["metadata"]["namespace"], p["metadata"]["name"]


class Rule:
    """How a pod ends. First match wins: exec mode (annotation or FAKE_KUBELET_EXEC) runs the real
    command; else the first container's env FAKE_KUBELET_*; else gpufleet's contract env
    GPUFLEET_FAKE_SECONDS/EXIT/OUTPUT (no SECONDS = runs until stopped); else the annotations."""

    def __init__(self, pod: dict, default_run: float):
        ann = pod["metadata"].get("annotations") or {}
        containers = pod["spec"].get("containers") or [{}]
        env: dict[str, str] = {}
        for e in containers[0].get("env") or []:
            if "name" in e:
                env[e["name"]] = kube_expand(e.get("value", ""), env)  # earlier entries only, as the kubelet
        self.env = env
        self.exec = str(env.get("FAKE_KUBELET_EXEC", ann.get(ANN + "exec", ""))).lower() in ("1", "true", "yes")
        always = pod["spec"].get("restartPolicy") == "Always"
        run: str | None = None
        code: str | None = None
        text: str | None = None
        if any(k.startswith("FAKE_KUBELET_") and k != "FAKE_KUBELET_EXEC" for k in env):
            run, code, text = (env.get("FAKE_KUBELET_RUN_SECONDS"), env.get("FAKE_KUBELET_EXIT_CODE"),
                               env.get("FAKE_KUBELET_LOG"))
        elif any(k.startswith("GPUFLEET_FAKE_") for k in env):
            run = env.get("GPUFLEET_FAKE_SECONDS", "-1")
            code, text = env.get("GPUFLEET_FAKE_EXIT"), env.get("GPUFLEET_FAKE_OUTPUT")
            text = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), ""), text or "")
        else:
            run, code, text = ann.get(ANN + "run-seconds"), ann.get(ANN + "exit-code"), ann.get(ANN + "log")
        self.run_seconds = float(run) if run not in (None, "") else (-1.0 if always else default_run)
        self.exit_code = int(code or 0)
        self.log_text = text


class LogStore:
    """One file per (namespace, pod, container) under state_dir/logs."""

    def __init__(self, state_dir: str):
        self.dir = os.path.join(state_dir, "logs")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, ns: str, pod: str, container: str) -> str:
        return os.path.join(self.dir, f"{ns}_{pod}_{container}.log")

    def write(self, ns: str, pod: str, container: str, text: str) -> None:
        with open(self.path(ns, pod, container), "a", encoding="utf-8") as f:
            f.write(text)

    def remove_pod(self, ns: str, pod: str) -> None:
        prefix = f"{ns}_{pod}_"
        for name in os.listdir(self.dir):
            if name.startswith(prefix):
                os.unlink(os.path.join(self.dir, name))


class Runner:
    """Pods run in exec mode: a real subprocess per pod (first container), output to its log file."""

    def __init__(self, logs: LogStore):
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, pod: dict, rule: Rule, gpu_ids: list[int]) -> None:
        c = pod["spec"]["containers"][0]
        argv = [kube_expand(a, rule.env) for a in list(c.get("command") or []) + list(c.get("args") or [])]
        ns, name = pod_key(pod)
        out = open(self.logs.path(ns, name, c["name"]), "ab")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **rule.env}
        # what the NVIDIA device plugin does: expose exactly the GPUs it allocated to the container
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids)) if gpu_ids else "void"
        cwd = c.get("workingDir") if c.get("workingDir") and os.path.isdir(c["workingDir"]) else "/tmp"
        argv = with_mounts(host_mounts(pod, c), argv or ["true"])
        try:
            self.procs[pod["metadata"]["uid"]] = subprocess.Popen(
                argv or ["true"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            out.write(f"fake-kubelet: cannot start {shlex.join(argv)}: {e}\n".encode())
            self.procs[pod["metadata"]["uid"]] = subprocess.Popen(["sh", "-c", "exit 127"])
        finally:
            out.close()

    def exit_code(self, uid: str) -> int | None:
        p = self.procs.get(uid)
        return None if p is None else p.poll()

    def kill(self, uid: str) -> None:
        p = self.procs.pop(uid, None)
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


# bind (src, dst, ro) triples, then exec the command: run by `unshare --mount` (a private namespace)
_BIND = """n=$1; shift
while [ "$n" -gt 0 ]; do
  if [ -d "$2" ]; then mount --bind "$1" "$2" && if [ "$3" = 1 ]; then mount -o remount,bind,ro "$2"; fi; fi
  shift 3; n=$((n - 1))
done
exec "$@"
"""


def host_mounts(pod: dict, c: dict) -> list[tuple[str, str, bool]]:
    """(source on this host, mountPath, readOnly) of the container's hostPath volumeMounts; a
    missing subPath folder is made, as kubelet does."""
    vols = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
    out = []
    for m in c.get("volumeMounts") or []:
        hp = (vols.get(m.get("name")) or {}).get("hostPath")
        if not hp:
            continue
        src = hp["path"]
        if m.get("subPath"):
            src = os.path.join(src, m["subPath"])
            os.makedirs(src, exist_ok=True)
        out.append((src, m["mountPath"], bool(m.get("readOnly"))))
    return out


def with_mounts(mounts: list[tuple[str, str, bool]], argv: list[str]) -> list[str]:
    """`argv` run in its own mount namespace with `mounts` bound (root only; else unchanged)."""
    mounts = [m for m in mounts if os.path.isdir(m[1])]
    if not mounts or os.geteuid() != 0 or not shutil.which("unshare"):
        return argv
    flat = [x for src, dst, ro in mounts for x in (src, dst, "1" if ro else "0")]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND, "fake-kubelet-mount",
            str(len(mounts)), *flat, *argv]


class FakeKubelet:
    def __init__(self, args: argparse.Namespace):
        config.load_kube_config(args.kubeconfig)
        self.core = client.CoreV1Api()
        self.coord = client.CoordinationV1Api()
        self.args = args
        self.nodes = [f"{args.prefix}-{i:02d}" for i in range(1, args.nodes + 1)]
        self.logs = LogStore(args.state_dir)
        self.runner = Runner(self.logs)
        self.pods: dict[str, dict] = {}  # uid -> latest pod (from the watch), only pods on our nodes
        self.started: dict[str, float] = {}  # uid -> when it went Running
        self.gpus: dict[str, tuple[str, list[int]]] = {}  # uid -> (node, gpu indices)
        self.rules: dict[str, Rule] = {}
        self.done: set[str] = set()  # uids we ended (the watch may still show them Running)
        self.seq = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()

    # ------------------------------------------------------------------ nodes --
    def node_status(self) -> dict:
        t = now_iso()

        def cond(typ: str, st: str, reason: str) -> dict:
            return {"type": typ, "status": st, "reason": reason, "message": "fake-kubelet",
                    "lastHeartbeatTime": t, "lastTransitionTime": t}

        res = {"cpu": str(self.args.cpus), "memory": f"{self.args.mem_gi}Gi", "pods": "250",
               "ephemeral-storage": "100Gi", GPU: str(self.args.gpus)}
        return {
            "capacity": res, "allocatable": res,
            "conditions": [cond("Ready", "True", "KubeletReady"),
                           cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                           cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                           cond("PIDPressure", "False", "KubeletHasSufficientPID")],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.args.log_port}},
            "nodeInfo": {"kubeletVersion": "v1.20.2-fake", "kubeProxyVersion": "v1.20.2-fake",
                         "architecture": "amd64", "operatingSystem": "linux",
                         "containerRuntimeVersion": "fake://0", "osImage": "gpufleet fake-kubelet",
                         "kernelVersion": "fake", "machineID": "", "systemUUID": "", "bootID": ""},
        }

    def register(self) -> None:
        a = self.args
        for n in self.nodes:
            labels = {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                      "type": "fake-kubelet", "nvidia.com/gpu.present": "true",
                      "nvidia.com/gpu.product": a.gpu_product, "nvidia.com/gpu.count": str(a.gpus),
                      "nvidia.com/gpu.memory": str(a.gpu_memory_mib)}
            try:
                self.core.create_node({"apiVersion": "v1", "kind": "Node",
                                       "metadata": {"name": n, "labels": labels}})
                log.info("registered node %s", n)
            except ApiException as e:
                if e.status != 409:
                    raise
            self.heartbeat(n)

    def heartbeat(self, n: str) -> None:
        st = self.node_status()
        why = (self.core.read_node(n).metadata.annotations or {}).get(ANN + "not-ready")
        if why:  # a test's node fault: report NotReady until the annotation goes
            ready = st["conditions"][0]
            ready.update(status="False", reason="KubeletNotReady", message=why)
        st["addresses"] = [{"type": "InternalIP", "address": self.args.address},
                           {"type": "Hostname", "address": n}]
        self.core.patch_node_status(n, {"status": st})
        spec = {"holderIdentity": n, "leaseDurationSeconds": 40,
                "renewTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        try:
            self.coord.patch_namespaced_lease(n, "kube-node-lease", {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": n, "namespace": "kube-node-lease"}, "spec": spec})

    # ------------------------------------------------------------------- watch --
    def watch_pods(self) -> None:
        """Keep self.pods in sync with a list+watch (relist on 410 Gone or any error)."""
        mine = set(self.nodes)
        while True:
            try:
                resp = self.core.list_pod_for_all_namespaces(_preload_content=False)
                body = json.loads(resp.data)
                with self.lock:
                    self.pods = {p["metadata"]["uid"]: p for p in body["items"]
                                 if p["spec"].get("nodeName") in mine}
                self.wake.set()
                self._watch_from(body["metadata"]["resourceVersion"], mine)
            except Exception as e:  # noqa: BLE001 - keep watching through API hiccups
                log.warning("pod watch: %s; relisting", e)
                time.sleep(0.5)

    def _watch_from(self, rv: str, mine: set[str]) -> None:
        while True:
            resp = self.core.list_pod_for_all_namespaces(
                watch=True, resource_version=rv, timeout_seconds=300, allow_watch_bookmarks=True,
                _preload_content=False)
            for line in iter_resp_lines(resp):
                ev = json.loads(line)
                obj = ev["object"]
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                rv = obj["metadata"]["resourceVersion"]
                if ev["type"] == "BOOKMARK" or obj["spec"].get("nodeName") not in mine:
                    continue
                with self.lock:
                    if ev["type"] == "DELETED":
                        self.pods.pop(obj["metadata"]["uid"], None)
                    else:
                        self.pods[obj["metadata"]["uid"]] = obj
                self.wake.set()

    # -------------------------------------------------------------------- pods --
    def alloc_gpus(self, pod: dict) -> list[int]:
        want = sum(int(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0))
                   for c in pod["spec"].get("containers") or [])
        node = pod["spec"]["nodeName"]
        used = {i for (n, ids) in self.gpus.values() if n == node for i in ids}
        return [i for i in range(self.args.gpus) if i not in used][:want]

    def set_running(self, pod: dict) -> None:
        uid, (ns, name) = pod["metadata"]["uid"], pod_key(pod)
        rule = self.rules[uid] = Rule(pod, self.args.run_seconds)
        ids = self.alloc_gpus(pod)
        self.gpus[uid] = (pod["spec"]["nodeName"], ids)
        self.seq += 1
        t = now_iso()
        cs = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
               "restartCount": 0, "containerID": f"fake://{uid}-{c['name']}",
               "state": {"running": {"startedAt": t}}} for c in pod["spec"]["containers"]]
        status = {"phase": "Running", "hostIP": self.args.address,
                  "podIP": f"10.244.{self.seq // 250 % 250}.{self.seq % 250 + 1}", "startTime": t,
                  "containerStatuses": cs,
                  "conditions": [{"type": x, "status": "True", "lastTransitionTime": t}
                                 for x in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}
        if ids:
            self.core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": {ANN_GPUS: ",".join(map(str, ids))}}})
        self.core.patch_namespaced_pod_status(name, ns, {"status": status})
        self.started[uid] = time.time()
        c0 = pod["spec"]["containers"][0]["name"]
        if rule.exec:
            self.runner.start(pod, rule, ids)
        elif rule.log_text is not None:
            text = rule.log_text
            self.logs.write(ns, name, c0, text if not text or text.endswith("\n") else text + "\n")
        else:
            argv = (pod["spec"]["containers"][0].get("command") or []) + (pod["spec"]["containers"][0].get("args") or [])
            self.logs.write(ns, name, c0, f"fake-kubelet: {name} on {pod['spec']['nodeName']} gpus={ids} "
                                          f"command={shlex.join(argv)}\n")
        log.info("pod %s/%s Running on %s gpus=%s", ns, name, pod["spec"]["nodeName"], ids)

    def finish(self, pod: dict, code: int, reason: str = "", message: str = "") -> None:
        uid, (ns, name) = pod["metadata"]["uid"], pod_key(pod)
        t = now_iso()
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": t, "finishedAt": t}
        cs = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
               "restartCount": 0, "containerID": f"fake://{uid}-{c['name']}", "state": {"terminated": term}}
              for c in pod["spec"]["containers"]]
        phase = "Succeeded" if code == 0 and not reason else "Failed"
        status: dict = {"phase": phase, "containerStatuses": cs,
                        "conditions": [{"type": x, "status": "False", "reason": "PodCompleted",
                                        "lastTransitionTime": t} for x in ("Ready", "ContainersReady")]}
        if reason:
            status.update(reason=reason, message=message)
        self.core.patch_namespaced_pod_status(name, ns, {"status": status})
        self.runner.kill(uid)
        self.started.pop(uid, None)
        self.gpus.pop(uid, None)
        self.done.add(uid)
        log.info("pod %s/%s %s (exit %d) %s", ns, name, phase, code, reason)

    def step(self, pod: dict) -> None:
        uid, (ns, name) = pod["metadata"]["uid"], pod_key(pod)
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if pod["metadata"].get("deletionTimestamp"):
            self.runner.kill(uid)
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            self.forget(uid)
            return
        if uid in self.done:
            return
        if phase == "Pending" and uid not in self.started:
            self.set_running(pod)
        elif phase == "Running":
            self.step_running(pod, uid)

    def step_running(self, pod: dict, uid: str) -> None:
        if uid not in self.started:  # we restarted: adopt what the API says is running
            self.started[uid] = time.time()
            self.rules[uid] = Rule(pod, self.args.run_seconds)
            ann = pod["metadata"].get("annotations") or {}
            self.gpus[uid] = (pod["spec"]["nodeName"], [int(x) for x in ann.get(ANN_GPUS, "").split(",") if x])
            if self.rules[uid].exec:  # the process died with the previous fake kubelet
                self.finish(pod, 137, "FakeKubeletRestarted", "the fake kubelet restarted; process lost")
                return
        rule, ran = self.rules[uid], time.time() - self.started[uid]
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and ran >= float(deadline):
            self.finish(pod, 137, "DeadlineExceeded",
                        f"Pod was active on the node longer than the specified deadline ({deadline}s)")
        elif rule.exec:
            code = self.runner.exit_code(uid)
            if code is not None:
                self.finish(pod, code if code >= 0 else 128 - code)
        elif rule.run_seconds >= 0 and ran >= rule.run_seconds:
            self.finish(pod, rule.exit_code)

    def forget(self, uid: str) -> None:
        for d in (self.started, self.gpus, self.rules):
            d.pop(uid, None)
        self.done.discard(uid)

    def sync(self) -> None:
        with self.lock:
            pods = list(self.pods.values())
        live = set()
        for p in pods:
            live.add(p["metadata"]["uid"])
            try:
                self.step(p)
            except ApiException as e:
                if e.status not in (404, 409):
                    log.warning("pod %s: %s %s", p["metadata"]["name"], e.status, e.reason)
        for uid in (set(self.started) | self.done) - live:
            self.runner.kill(uid)
            self.forget(uid)

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.watch_pods, daemon=True, name="pod-watch").start()
        threading.Thread(target=serve_logs, args=(self,), daemon=True, name="logs").start()
        last_hb = time.time()
        while True:
            self.wake.wait(0.2)
            self.wake.clear()
            try:
                self.sync()
                if time.time() - last_hb >= 10:
                    for n in self.nodes:
                        self.heartbeat(n)
                    last_hb = time.time()
            except Exception as e:  # noqa: BLE001 - keep going through API hiccups
                log.warning("loop error: %s", e)

    def pod_running(self, ns: str, name: str) -> bool:
        with self.lock:
            for p in self.pods.values():
                if pod_key(p) == (ns, name):
                    return (p.get("status") or {}).get("phase") in ("Pending", "Running") \
                        and not p["metadata"].get("deletionTimestamp")
        return False


# ---------------------------------------------------------------------- log endpoint --
def make_handler(kubelet: FakeKubelet):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close-delimited bodies make `follow` simple

        def log_message(self, fmt, *a):  # noqa: N802 - stdlib name
            log.debug("http " + fmt, *a)

        def do_GET(self):  # noqa: N802 - stdlib name
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/{ns}/{pod}/{container} is served")
                return
            _, ns, pod, container = parts
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            path = kubelet.logs.path(ns, pod, container)
            if not os.path.exists(path):
                self.send_error(404, f"no logs for {ns}/{pod}/{container}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.stream(path, ns, pod, q)

        def stream(self, path: str, ns: str, pod: str, q: dict) -> None:
            stamped = q.get("timestamps") == "true"
            with open(path, "rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
            pos = len(data)
            if "tailLines" in q:
                n = int(q["tailLines"])
                data = b"".join(data.splitlines(keepends=True)[-n:]) if n > 0 else b""
            if stamped:
                data = stamp(data, mtime)
            left = int(q["limitBytes"]) if "limitBytes" in q else None
            follow = q.get("follow") == "true"
            while True:
                if left is not None:
                    data, left = data[:left], left - len(data[:left])
                self.wfile.write(data)
                self.wfile.flush()
                if not follow or left == 0:
                    return
                running = kubelet.pod_running(ns, pod)
                if running:
                    time.sleep(0.2)
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
                    mtime = os.fstat(f.fileno()).st_mtime
                pos += len(data)
                if stamped:
                    data = stamp(data, mtime)
                if not running:  # one last read after the pod ended, then close
                    follow = False

    return Handler


def stamp(data: bytes, at: float) -> bytes:
    """Each line prefixed with `at` as kubelet writes it for timestamps=true (RFC 3339, ns, UTC)."""
    t = dt.datetime.fromtimestamp(at, dt.timezone.utc)
    prefix = (t.strftime("%Y-%m-%dT%H:%M:%S") + f".{t.microsecond:06d}000Z ").encode()
    return b"".join(prefix + line for line in data.splitlines(keepends=True))


def serve_logs(kubelet: FakeKubelet) -> None:
    a = kubelet.args
    srv = http.server.ThreadingHTTPServer((a.address, a.log_port), make_handler(kubelet))
    srv.daemon_threads = True
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.client_ca:
            ctx.load_verify_locations(a.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED  # only the apiserver (client cert from our CA) may read
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    log.info("serving /containerLogs on %s://%s:%d", "https" if a.tls_cert else "http", a.address, a.log_port)
    srv.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--prefix", default="gpu-node")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--mem-gi", type=int, default=512)
    ap.add_argument("--gpu-product", default="NVIDIA-A100-SXM4-80GB")
    ap.add_argument("--gpu-memory-mib", type=int, default=81920)
    ap.add_argument("--run-seconds", type=float, default=float(os.environ.get("FAKE_KUBELET_RUN_SECONDS", 3)))
    ap.add_argument("--address", default="127.0.0.1", help="node InternalIP and log-server bind address")
    ap.add_argument("--log-port", type=int, default=10350)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--state-dir", default="/tmp/fake-kubelet")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    FakeKubelet(args).run()


if __name__ == "__main__":
    main()
