"""The Kubernetes executor: gpufleet's placed jobs as Kubernetes objects on a real API server.

* single-node job -> batch/v1 Job (one pod, backoffLimit 0, activeDeadlineSeconds = time limit)
* multi-node gang -> one bare pod per rank + a headless Service (the pods' owner), created in one
  go only once gpufleet has placed every rank
* pods request `nvidia.com/gpu` and are pinned by node affinity to gpufleet's nodes
* state comes from a WATCH (`WatchCache`); `poll` reads the cache; logs via the pod log API
* tenants are LABELS in one namespace (see docs/kubernetes.md for why)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, ClassVar, Sequence

from kubernetes import client, config as kconfig
from kubernetes.client.rest import ApiException

from gpufleet.domain import Job, Node, ValidationError
from gpufleet.executors.accounts import Accounts, lookup
from gpufleet.executors.base import (
    Ability, ExecutorBase, LogChunk, Observation, Phase, ResultFile, attempt_view, newest_write_below)
from gpufleet.executors.kubernetes import manifests, names as n, nodes as kn, perf as kperf, phases, progress
from gpufleet.executors.kubernetes.cache import Key, WatchCache
from gpufleet.executors.kubernetes.config import KubernetesConfig

log = logging.getLogger(__name__)
MAX_LOG_CHUNK = 1 << 20


def api_client(cfg: KubernetesConfig) -> client.ApiClient:
    if cfg.kubeconfig is None:
        try:
            c = client.Configuration()
            kconfig.load_incluster_config(client_configuration=c)
            return client.ApiClient(c)
        except kconfig.ConfigException:
            pass
    return kconfig.new_client_from_config(config_file=cfg.kubeconfig, context=cfg.context)


class KubernetesExecutor(ExecutorBase):
    name: ClassVar[str] = "kubernetes"
    abilities: ClassVar[frozenset[Ability]] = frozenset(
        {Ability.NODES, Ability.DRAIN, Ability.LOGS, Ability.ADOPT, Ability.IMAGES, Ability.HEARTBEAT,
         Ability.RESULTS, Ability.PERF_IN_JOB,
         Ability.CONCURRENT_LAUNCH, Ability.WATCH})  # the client's urllib3 pool is thread-safe
    requires: ClassVar[frozenset[str]] = frozenset({"image"})  # checked by the submit service

    def __init__(self, cfg: KubernetesConfig | None = None, *, api: client.ApiClient | None = None,
                 clock: Any = time.time, accounts: Accounts | None = None):
        self.cfg = cfg or KubernetesConfig()
        self.accounts = accounts  # the user -> account mapping, for `run_as_user`
        if self.cfg.default_image:  # a site-wide default image: --image becomes optional
            self.requires = frozenset()  # type: ignore[misc]
        self.api = api or api_client(self.cfg)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.clock = clock
        self.cache = WatchCache(self.core, self.batch, self.cfg.namespace, self.cfg.instance,
                                self.cfg.watch_timeout_s)
        self._launched: dict[Key, float] = {}  # attempts launched by this process: when
        self._cancelled: set[Key] = set()
        self._starting: dict[Key, float] = {}  # attempts seen STARTING: since when
        self._final: dict[Key, Observation] = {}  # ended attempts: what they ended as
        self._progress: dict[Key, tuple[float, float | None]] = {}  # attempt -> (read at, newest line)
        self._namespace_ready = False
        self._lock = threading.Lock()
        self.cache.start()

    # ------------------------------------------------------------------ launch --
    def validate(self, job: Job) -> None:
        """Raise ValidationError for a spec this engine cannot run (no image...): for submit time."""
        manifests.validate_spec(self.cfg, job)

    def launch(self, job: Job) -> str | None:
        manifests.validate(self.cfg, job)
        run_as = self._run_as(job)  # before creating anything: a refused job leaves no object
        self._ensure_namespace()
        key = n.job_key(job)
        base = n.base_name(self.cfg.instance, job)
        if n.is_gang(job):
            self._launch_gang(job, run_as)
        else:
            self._create(self.batch.create_namespaced_job, manifests.batch_job(self.cfg, job, run_as))
        with self._lock:
            self._launched.setdefault(key, self.clock())
        return f"{self.cfg.namespace}/{base}"

    def _run_as(self, job: Job) -> manifests.RunAs | None:
        """(uid, gid) of the owner's account with `run_as_user`, else None (the image's user).
        ValidationError("user") when the owner maps to no account or to root."""
        if not self.cfg.run_as_user:
            return None
        name = self.accounts.account_name(job.user) if self.accounts is not None else job.user
        if name.isdigit():
            uid = gid = int(name)
        else:
            account = lookup(name)
            if account is None:
                raise ValidationError("user", f"user {job.user} has no Unix account {name!r} to run its pods as "
                                              "(map it with the server setting `accounts`, a name or a uid)")
            uid, gid = account.uid, account.gid
        if uid == 0:
            raise ValidationError("user", f"user {job.user} maps to root ({name!r}): pods never run as root")
        return uid, gid

    def _launch_gang(self, job: Job, run_as: manifests.RunAs | None = None) -> None:
        svc = self._create(self.core.create_namespaced_service, manifests.headless_service(self.cfg, job))
        uid = (svc.get("metadata") or {}).get("uid")
        for rank in range(len(job.allocation)):
            self._create(self.core.create_namespaced_pod, manifests.gang_pod(self.cfg, job, rank, uid, run_as))

    def _create(self, create: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Create; an object of that name already there (a repeated launch) is fine: return it."""
        name = body["metadata"]["name"]
        try:
            return self._created(create, body)
        except ApiException as e:
            if e.status != 409:
                raise
            log.info("%s %s already exists: adopting it", body["kind"], name)
            return self._read(body["kind"], name)

    def _created(self, create: Any, body: dict[str, Any]) -> dict[str, Any]:
        # the raw answer: only its uid and name are needed, and turning it into the client's model
        # objects costs more CPU than the request itself
        resp = create(self.cfg.namespace, body, _preload_content=False, _request_timeout=self.cfg.request_timeout_s)
        meta = json.loads(resp.data).get("metadata") or {}
        return {"metadata": {"uid": meta.get("uid"), "name": meta.get("name")}}

    def _read(self, kind: str, name: str) -> dict[str, Any]:
        read = {"Job": self.batch.read_namespaced_job, "Service": self.core.read_namespaced_service,
                "Pod": self.core.read_namespaced_pod}[kind]
        obj = read(name, self.cfg.namespace)
        return {"metadata": {"uid": obj.metadata.uid, "name": obj.metadata.name}}

    def _ensure_namespace(self) -> None:
        if self._namespace_ready or not self.cfg.create_namespace:
            return
        try:
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": self.cfg.namespace,
                                                     "labels": {n.MANAGED_BY: "gpufleet"}}})
        except ApiException as e:
            if e.status not in (409, 403):  # exists, or we may not create namespaces (then it must exist)
                raise
        self._namespace_ready = True

    def watch(self, on_event: Any) -> None:
        """`on_event()` from the watch thread when one of our pods or Jobs ended (cache.py)."""
        self.cache.on_end.append(on_event)

    # -------------------------------------------------------------------- poll --
    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        if not self.cache.wait_synced(self.cfg.request_timeout_s):
            log.warning("watch cache not synced yet (%s %s)", self.cache.pods.error, self.cache.jobs.error)
            return []
        out = []
        for job in jobs:
            obs = self.observe(job)
            if obs is not None:
                out.append(obs)
        return out

    def observe(self, job: Job) -> Observation | None:
        """The job's phase from the cache; an ended phase is remembered and never changes again."""
        key = n.job_key(job)
        with self._lock:
            final = self._final.get(key)
        if final is not None:
            return final
        obs = self._observe(job, key)
        if obs is not None and obs.phase.ended:
            with self._lock:
                self._final[key] = obs
        return obs

    def _observe(self, job: Job, key: Key) -> Observation | None:
        kjobs, pods = self.cache.objects(key)
        handle = f"{self.cfg.namespace}/{n.base_name(self.cfg.instance, job)}"
        with self._lock:
            launched = self._launched.get(key)
        settled = launched is None or self.clock() - launched > self.cfg.adopt_grace_s
        if not kjobs and not pods:
            return self._absent(job, key, handle, settled)
        if kjobs or not n.is_gang(job):
            obs = phases.observe_batch_job(job.id, kjobs, pods, handle)
        else:
            obs = phases.observe_gang(job.id, len(job.allocation), pods, handle, settled)
            if obs.phase.ended and obs.phase is not Phase.CANCELLED:
                self._reap_gang(job, pods, obs.reason)
        if key in self._cancelled and obs.phase in (Phase.STARTING, Phase.RUNNING, Phase.FAILED):
            return Observation(job.id, Phase.CANCELLED, obs.exit_code, "cancelled", handle)
        if obs.phase is Phase.STARTING:
            return self._starting_too_long(job, key, obs)
        with self._lock:
            self._starting.pop(key, None)
        return obs

    def _starting_too_long(self, job: Job, key: Key, obs: Observation) -> Observation:
        """A job that cannot start (bad image name, or not running after start_timeout_s: e.g. a
        foreign pod took its GPUs after gpufleet placed it) FAILS with the reason and is removed,
        instead of holding its GPUs in gpufleet forever."""
        with self._lock:
            since = self._starting.setdefault(key, self.clock())
        fatal = obs.reason.split(":", 1)[0] in phases.FATAL_WAITING_REASONS
        waited = self.clock() - since
        if not fatal and (self.cfg.start_timeout_s is None or waited < self.cfg.start_timeout_s):
            return obs
        why = obs.reason if fatal else f"not running after {waited:.0f}s: {obs.reason}"
        self._delete_objects(job, "Background")
        return Observation(job.id, Phase.FAILED, None, f"could not start: {why}", obs.handle)

    def _absent(self, job: Job, key: Key, handle: str, settled: bool) -> Observation | None:
        if key in self._cancelled:
            return Observation(job.id, Phase.CANCELLED, None, "cancelled", handle)
        if self.cache.deleted_at(key) is not None:
            return Observation(job.id, Phase.CANCELLED, None, "its Kubernetes objects were deleted outside gpufleet",
                               handle)
        if not settled or job.handle is None:
            return None  # just launched (watch lag) or never launched: nothing to say yet
        return Observation(job.id, Phase.LOST, None,
                           f"no Kubernetes objects labelled {n.selector(self.cfg.instance, job)}", handle)

    def _reap_gang(self, job: Job, pods: list[dict[str, Any]], why: str) -> None:
        """A gang ended (a rank failed or timed out): stop the ranks still running. Running ones get
        activeDeadlineSeconds=1 (kubelet stops them, the pods and their logs stay); unstarted ones
        are deleted. The annotation keeps them from being taken for the cause after a restart."""
        for p in pods:
            meta, phase = p["metadata"], (p.get("status") or {}).get("phase")
            if meta.get("deletionTimestamp") or phase not in ("Pending", "Running"):
                continue
            if (meta.get("annotations") or {}).get(n.STOPPED_ANN):
                continue
            try:
                if phase == "Running":
                    self.core.patch_namespaced_pod(meta["name"], self.cfg.namespace, {
                        "metadata": {"annotations": {n.STOPPED_ANN: why}}, "spec": {"activeDeadlineSeconds": 1}})
                else:
                    self._delete(self.core.delete_namespaced_pod, meta["name"], "Background")
            except ApiException as e:
                if e.status not in (404, 409, 422):
                    raise

    # ------------------------------------------------------------------ cancel --
    def cancel(self, job: Job) -> None:
        """Delete the job's objects with propagation. An ended job is left alone (its pods keep the logs)."""
        key = n.job_key(job)
        if self.cache.wait_synced(self.cfg.request_timeout_s):
            current = self.observe(job)
            if current is not None and current.phase.ended:
                return
        with self._lock:
            self._cancelled.add(key)
        self._delete_objects(job, self.cfg.delete_propagation)

    def _delete_objects(self, job: Job, prop: str) -> None:
        base = n.base_name(self.cfg.instance, job)
        if n.is_gang(job):
            self._delete(self.core.delete_namespaced_service, base, prop)  # owner of the rank pods
            for rank in range(max(len(job.allocation), job.spec.nodes)):
                self._delete(self.core.delete_namespaced_pod, n.pod_name(base, rank), prop)
        else:
            self._delete(self.batch.delete_namespaced_job, base, prop)

    def _delete(self, delete: Any, name: str, propagation: str) -> None:
        try:
            # the body (Status or the object, depending on kind and server version) is not needed
            delete(name, self.cfg.namespace, propagation_policy=propagation, _preload_content=False)
        except ApiException as e:
            if e.status != 404:
                raise

    # -------------------------------------------------------------------- logs --
    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        """Rank `rank`'s pod log of attempt `attempt` (each attempt has its own objects: names.py)."""
        view, over = attempt_view(job, attempt)
        pod = self._pod_for(view, rank)
        if pod is None:
            return LogChunk(b"", offset, True, note=f"no pod for rank {rank} of attempt {view.attempt} of job "
                                                     f"{job.id}: logs are gone (pods deleted) or it never started")
        name = pod["metadata"]["name"]
        ended = over or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        try:
            resp = self.core.read_namespaced_pod_log(
                name, self.cfg.namespace, container=self.cfg.container_name, limit_bytes=offset + MAX_LOG_CHUNK,
                _preload_content=False, _request_timeout=self.cfg.request_timeout_s)
            data = resp.data
        except ApiException as e:
            return LogChunk(b"", offset, ended, note=f"logs of pod {name} are not available through the "
                                                     f"Kubernetes pod log API ({e.status} {e.reason}: "
                                                     f"{(e.body or '')[:200]!s})")
        chunk = data[offset:]
        complete = ended and len(data) < offset + MAX_LOG_CHUNK
        return LogChunk(chunk, offset + len(chunk), complete)

    # --------------------------------------------------------------- heartbeat --
    def last_sign_of_life(self, job: Job) -> float | None:
        """The newest output line of any running rank pod of the current attempt (its kubelet
        timestamp: pod log API, timestamps=true, tailLines=1). A reading is reused for
        `progress.refresh_s(--heartbeat)`. A pod whose container has not started or is gone (400,
        404) shows nothing; any other error is raised, so an unreachable API server or kubelet is
        never taken for a hang (the control loop skips the check that cycle)."""
        key, now = n.job_key(job), self.clock()
        with self._lock:
            hit = self._progress.get(key)
        if hit is not None and now - hit[0] < progress.refresh_s(job.spec.heartbeat_s):
            return hit[1]
        _, pods = self.cache.objects(key)
        seen = [self._newest_line(p["metadata"]["name"]) for p in pods
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        newest = max((t for t in seen if t is not None), default=None)
        with self._lock:
            if len(self._progress) > 4096:  # forget attempts whose objects are gone
                live = self.cache.keys()
                self._progress = {k: v for k, v in self._progress.items() if k in live}
            self._progress[key] = (now, newest)
        return newest

    def _newest_line(self, pod: str) -> float | None:
        try:
            resp = self.core.read_namespaced_pod_log(
                pod, self.cfg.namespace, container=self.cfg.container_name, timestamps=True, tail_lines=1,
                _preload_content=False, _request_timeout=self.cfg.request_timeout_s)
        except ApiException as e:
            if e.status in (400, 404):  # waiting to start / deleted: no output to judge by
                return None
            raise
        return progress.line_time(resp.data)

    def last_checkpoint(self, job: Job) -> float | None:
        """The newest write in the job's folder of the checkpoint volume, where this server sees
        that volume (`checkpoint_server_path`); None otherwise (a pod's files cannot be read
        through the API without exec)."""
        sub = self.cfg.checkpoint_subpath(job.id, job.submitted_at)
        if self.cfg.checkpoint_server_path is None or sub is None:
            return None
        return newest_write_below(os.path.join(self.cfg.checkpoint_server_path, sub))

    def _pod_for(self, job: Job, rank: int) -> dict[str, Any] | None:
        _, pods = self.cache.objects(n.job_key(job))
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(n.RANK, "0") == str(rank)]
        if not mine:
            sel = f"{n.selector(self.cfg.instance, job)},{n.RANK}={rank}"
            resp = self.core.list_namespaced_pod(self.cfg.namespace, label_selector=sel)
            mine = [self.api.sanitize_for_serialization(p) for p in resp.items]
        mine.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return mine[-1] if mine else None

    # ---------------------------------------------------------- results and perf --
    def perf_verdicts(self, job: Job, attempt: int) -> tuple[list[dict], list[str]]:
        """A perf job's in-pod verdicts per rank, read from the pod logs' marker lines (perf.py)."""
        verdicts, _, notes = kperf.read_ranks(self, job, attempt)
        return verdicts, notes

    def results(self, job: Job, attempt: int) -> tuple[list[ResultFile], list[str]]:
        """The $GPUFLEET_RESULTS_DIR files a perf job's wrapper printed into its pod logs (perf.py)."""
        _, files, notes = kperf.read_ranks(self, job, attempt)
        return files, notes

    # ------------------------------------------------------------------- nodes --
    def nodes(self) -> list[Node]:
        nodes = self._list_raw(self.core.list_node, label_selector=self.cfg.node_selector or "")
        pods = self._list_raw(self.core.list_pod_for_all_namespaces,
                              field_selector="status.phase!=Succeeded,status.phase!=Failed")
        foreign = kn.foreign_gpus(self.cfg, pods)
        now = self.clock()
        out = [kn.to_node(self.cfg, k, foreign.get(k["metadata"]["name"], 0), now) for k in nodes]
        if self.cfg.node_selector:
            return out
        return [node for node in out if node.gpus]

    def _list_raw(self, fn: Any, **kw: Any) -> list[dict[str, Any]]:
        resp = fn(_preload_content=False, _request_timeout=self.cfg.request_timeout_s, **kw)
        return json.loads(resp.data).get("items") or []

    def drain(self, node: str, reason: str) -> None:
        self._patch_node(node, lambda k: kn.drain_patch(k, reason or "drained by gpufleet"))

    def resume(self, node: str) -> None:
        self._patch_node(node, kn.resume_patch)

    def _patch_node(self, node: str, make: Any) -> None:
        for _ in range(5):  # optimistic concurrency: the patch carries the resourceVersion it read
            k = self.api.sanitize_for_serialization(self.core.read_node(node))
            try:
                self.core.patch_node(node, make(k))
                return
            except ApiException as e:
                if e.status != 409:
                    raise
        raise RuntimeError(f"node {node} kept changing while patching it")

    def close(self) -> None:
        self.cache.stop()
        self.api.close()
