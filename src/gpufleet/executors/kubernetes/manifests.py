"""Kubernetes objects for a placed gpufleet job, as plain dicts the official client accepts.

Only fields that exist in batch/v1 and core/v1 since Kubernetes 1.20 are used (no Indexed Jobs, no
Job `suspend`, no JobSet), so the same objects work on 1.20 and on current releases.

What a user wrote reaches the API server as JSON values, never as YAML or shell text. The one
rendering step left is the kubelet's: it expands `$(VAR)` in a container's `command`, `args` and env
`value`s and turns `$$` into `$`. So every `$` of the command and of env values is doubled
(`literal`), and the process gets its argv and env verbatim, as on the local and Slurm engines.
Names are built from integers and the DNS-label instance (names.py); labels from user text go through
`label_value`; the job name is an annotation value (any string)."""

from __future__ import annotations

from typing import Any

from gpufleet.domain import Job, ValidationError
from gpufleet.domain.image import DEFAULT_PULL, parse_mount
from gpufleet.executors.base import HEARTBEAT_FILE, master_port_for, rank_env
from gpufleet.executors.kubernetes import names as n, perf as kperf
from gpufleet.executors.kubernetes.config import KubernetesConfig

RunAs = tuple[int, int]  # (uid, gid) a job's pods run as
PULL_POLICY = {"always": "Always", "missing": "IfNotPresent", "never": "Never"}  # spec `pull` -> imagePullPolicy

# Inside a container the device plugin exposes exactly the GPUs it assigned, renumbered from 0, and
# sets NVIDIA_VISIBLE_DEVICES itself. Setting it from the pod spec would bypass GPU isolation.
_DEVICE_PLUGIN_OWNS = ("NVIDIA_VISIBLE_DEVICES",)
RUN_MOUNT = "/gpufleet/run"  # $GPUFLEET_RUN_DIR: an emptyDir per rank pod (this attempt's scratch)
CHECKPOINT_VOLUME = "gpufleet-checkpoints"
CHECKPOINT_ROOT = "/gpufleet/checkpoint-root"  # the volume's root, in the init container only
# Run as the job's account (run_as_user) before the main container: make the job's folder of the
# checkpoint volume 0700 and its own, or refuse one that is a link or another account's (exit 75),
# as the Slurm batch script does. Only sh builtins and mkdir: any image with a POSIX shell has them.
CHECKPOINT_INIT = (
    'd=$1\n'
    'if [ ! -e "$d" ] && [ ! -L "$d" ]; then mkdir -m 0700 "$d" || exit 75; fi\n'
    'if [ -L "$d" ] || [ ! -d "$d" ] || [ ! -O "$d" ]; then\n'
    '  echo "gpufleet: the checkpoint directory $d is a link or belongs to another account: refused" >&2; exit 75\n'
    'fi\n')


def image(cfg: KubernetesConfig, job: Job) -> str | None:
    return job.spec.image or cfg.default_image


def validate_spec(cfg: KubernetesConfig, job: Job) -> None:
    """What this executor needs beyond the common spec (checkable at submit time)."""
    if not image(cfg, job):
        raise ValidationError(
            "image", "the kubernetes executor runs jobs in containers: submit with --image "
            "(e.g. --image nvcr.io/nvidia/pytorch:24.05-py3)")
    if not job.spec.command:
        raise ValidationError("command", "a command is required")


def validate(cfg: KubernetesConfig, job: Job) -> None:
    """validate_spec + a full placement (gangs start all together or not at all)."""
    validate_spec(cfg, job)
    low = job.spec.nodes_min or job.spec.nodes  # an elastic gang runs on as many as were placed
    if not low <= len(job.allocation) <= job.spec.nodes:
        need = job.spec.nodes if low == job.spec.nodes else f"{low}:{job.spec.nodes}"
        raise ValidationError(
            "allocation", f"job {job.id} has {len(job.allocation)} placed ranks, needs {need}: "
            "gangs are created only once every rank is placed")


def master_addr(cfg: KubernetesConfig, job: Job) -> str:
    """Rank 0's stable DNS name: <pod>.<headless service>.<namespace>.svc.<cluster domain>."""
    if not n.is_gang(job):
        return "127.0.0.1"
    base = n.base_name(cfg.instance, job)
    return f"{n.pod_name(base, 0)}.{base}.{cfg.namespace}.svc.{cfg.cluster_domain}"


def container_env(cfg: KubernetesConfig, job: Job, rank: int) -> list[dict[str, str]]:
    env = dict(job.spec.env)
    env.update(rank_env(job, rank, master_addr(cfg, job), master_port_for(job.id)))
    for key in _DEVICE_PLUGIN_OWNS:
        env.pop(key, None)
    gpus = len(job.allocation[rank].gpus)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))  # container-relative
    env["GPUFLEET_RUN_DIR"] = RUN_MOUNT
    env["GPUFLEET_HEARTBEAT_FILE"] = f"{RUN_MOUNT}/{HEARTBEAT_FILE}"  # for portable scripts: see docs
    if cfg.checkpoint_volume is not None:
        env["GPUFLEET_CHECKPOINT_DIR"] = cfg.checkpoint_mount
    return [{"name": k, "value": literal(str(v))} for k, v in sorted(env.items())]


def literal(text: str) -> str:
    """`text` as the kubelet will pass it on: `$` doubled, so no `$(VAR)` in it is ever expanded."""
    return text.replace("$", "$$")


def volumes(cfg: KubernetesConfig, job: Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container volumeMounts): $GPUFLEET_RUN_DIR (an emptyDir), the job's subPath
    of the checkpoint volume, then the spec's `mounts` as hostPath volumes, the SRC on the node the
    pod lands on (as the local and Slurm engines bind the node's path); read-only ones mounted
    readOnly. Clusters whose Pod Security admission forbids hostPath refuse such pods: the job
    FAILs with the API server's reason."""
    vols: list[dict[str, Any]] = [{"name": "gpufleet-run", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "gpufleet-run", "mountPath": RUN_MOUNT}]
    ckpt = checkpoint_source(cfg)
    if ckpt is not None:
        vols.append({"name": CHECKPOINT_VOLUME, **ckpt})
        mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": cfg.checkpoint_mount,
                       "subPath": cfg.checkpoint_subpath(job.id, job.submitted_at)})
    for i, text in enumerate(job.spec.mounts):
        m = parse_mount(text)
        name = f"gpufleet-mount-{i}"
        vols.append({"name": name, "hostPath": {"path": m.source}})
        mounts.append({"name": name, "mountPath": m.target, "readOnly": m.read_only})
    return vols, mounts


def checkpoint_source(cfg: KubernetesConfig) -> dict[str, Any] | None:
    """The checkpoint volume's source: the PVC, or the host path (type Directory: a node without
    it fails the pod with kubelet's reason instead of making an empty folder there)."""
    vol = cfg.checkpoint_volume
    if vol is None:
        return None
    if "claim" in vol:
        return {"persistentVolumeClaim": {"claimName": vol["claim"]}}
    return {"hostPath": {"path": vol["host_path"], "type": "Directory"}}


def checkpoint_init(cfg: KubernetesConfig, job: Job) -> dict[str, Any]:
    """The init container that makes the job's checkpoint folder as the job's account (0700)."""
    folder = f"{CHECKPOINT_ROOT}/{cfg.checkpoint_subpath(job.id, job.submitted_at)}"
    return {
        "name": "gpufleet-checkpoint-dir",
        "image": image(cfg, job),
        "imagePullPolicy": PULL_POLICY[job.spec.pull or DEFAULT_PULL],
        "command": [literal(a) for a in ("/bin/sh", "-c", CHECKPOINT_INIT, "gpufleet-checkpoint-dir", folder)],
        "volumeMounts": [{"name": CHECKPOINT_VOLUME, "mountPath": CHECKPOINT_ROOT}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def _resources(cfg: KubernetesConfig, job: Job, rank: int) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    gpus = len(job.allocation[rank].gpus)
    if gpus:
        limits[cfg.gpu_resource] = str(gpus)  # extended resources: request = limit
    if job.spec.cpus:
        requests["cpu"] = str(job.spec.cpus)
    if job.spec.mem_mb:
        requests["memory"] = limits["memory"] = f"{job.spec.mem_mb}Mi"
    out: dict[str, Any] = {"limits": limits}
    if requests:
        out["requests"] = requests
    return out


def _affinity(cfg: KubernetesConfig, job: Job, rank: int) -> dict[str, Any] | None:
    if not cfg.pin_nodes:
        return None
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [job.allocation[rank].node]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def _command(cfg: KubernetesConfig, job: Job) -> list[str]:
    """The job's argv; a perf job's wrapped in the clean-room steps (perf.py)."""
    if job.spec.perf is None:
        return list(job.spec.command)
    return kperf.wrapped_command(cfg.gpufleet_bin, cfg.perf_fake_nvml, job)


def pod_spec(cfg: KubernetesConfig, job: Job, rank: int, run_as: RunAs | None = None) -> dict[str, Any]:
    """One rank's pod. No service-account token is mounted (a job holds no credential for the
    cluster, whatever `service_account` says); with `run_as` (uid, gid) the pod runs as that
    account, never as root, and cannot gain privileges (setuid binaries) beyond it."""
    container: dict[str, Any] = {
        "name": cfg.container_name,
        "image": image(cfg, job),
        "imagePullPolicy": PULL_POLICY[job.spec.pull or DEFAULT_PULL],
        "command": [literal(arg) for arg in _command(cfg, job)],
        "env": container_env(cfg, job, rank),
        "resources": _resources(cfg, job, rank),
    }
    vols, mounts = volumes(cfg, job)
    container["volumeMounts"] = mounts
    if job.spec.workdir:
        container["workingDir"] = job.spec.workdir
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [container],
        "tolerations": [dict(t) for t in cfg.tolerations],
    }
    spec["volumes"] = vols
    if run_as is not None:
        uid, gid = run_as
        if uid == 0:
            raise ValidationError("user", f"job {job.id} would run as uid 0 (root) in its pods")
        spec["securityContext"] = {"runAsUser": uid, "runAsGroup": gid, "runAsNonRoot": True}
        container["securityContext"] = {"allowPrivilegeEscalation": False}
        if cfg.checkpoint_volume is not None:
            spec["initContainers"] = [checkpoint_init(cfg, job)]
    affinity = _affinity(cfg, job, rank)
    if job.spec.perf is not None:  # whole node: no other gpufleet pod beside it
        affinity = {**(affinity or {}), **kperf.anti_affinity(cfg.instance, job)}
    if affinity:
        spec["affinity"] = affinity
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    if cfg.priority_class:
        spec["priorityClassName"] = cfg.priority_class
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    return spec


def _meta(cfg: KubernetesConfig, job: Job, name: str, rank: int | None = None) -> dict[str, Any]:
    labels = {**cfg.pod_labels, **n.labels(cfg.instance, job)}
    annotations = {n.JOB_NAME_ANN: job.spec.display_name}
    if rank is not None:
        labels[n.RANK] = str(rank)
        annotations.update(cfg.pod_annotations)
    return {"name": name, "namespace": cfg.namespace, "labels": labels, "annotations": annotations}


def batch_job(cfg: KubernetesConfig, job: Job, run_as: RunAs | None = None) -> dict[str, Any]:
    """A single-node job: batch/v1 Job, one pod, no retries, deadline = time limit."""
    name = n.base_name(cfg.instance, job)
    spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 0,
        "template": {"metadata": _meta(cfg, job, name, rank=0), "spec": pod_spec(cfg, job, 0, run_as)},
    }
    del spec["template"]["metadata"]["name"], spec["template"]["metadata"]["namespace"]
    if job.spec.time_limit_s:
        spec["activeDeadlineSeconds"] = int(job.spec.time_limit_s)
    if cfg.ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = cfg.ttl_after_finished_s
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(cfg, job, name), "spec": spec}


def headless_service(cfg: KubernetesConfig, job: Job) -> dict[str, Any]:
    """DNS for the gang's ranks; `publishNotReadyAddresses` so rank 0 resolves before it is Ready."""
    name = n.base_name(cfg.instance, job)
    sel = {n.INSTANCE: cfg.instance, n.JOB_ID: str(job.id), n.ATTEMPT: str(job.restarts), n.TAG: n.job_tag(job)}
    port = master_port_for(job.id)
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(cfg, job, name),
        "spec": {"clusterIP": "None", "selector": sel, "publishNotReadyAddresses": True,
                 "ports": [{"name": "master", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }


def gang_pod(cfg: KubernetesConfig, job: Job, rank: int, service_uid: str | None,
             run_as: RunAs | None = None) -> dict[str, Any]:
    """Rank `rank` of a gang: a bare pod (hostname + subdomain give it DNS), owned by the Service so
    deleting the Service with propagation deletes the whole gang."""
    base = n.base_name(cfg.instance, job)
    meta = _meta(cfg, job, n.pod_name(base, rank), rank=rank)
    if service_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "name": base, "uid": service_uid,
                                    "blockOwnerDeletion": True}]
    spec = pod_spec(cfg, job, rank, run_as)
    spec["hostname"] = n.pod_name(base, rank)
    spec["subdomain"] = base
    if job.spec.time_limit_s:
        spec["activeDeadlineSeconds"] = int(job.spec.time_limit_s)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
