"""Settings of the Kubernetes executor (injected by main.py; nothing here reads the environment)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from gpufleet.domain import ValidationError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a PersistentVolumeClaim name
DEFAULT_TOLERATIONS: tuple[Mapping[str, str], ...] = (
    # GPU nodes are commonly tainted so that only GPU pods land there.
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
)


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    kubeconfig: str | None = None  # None: in-cluster service account, else ~/.kube/config
    context: str | None = None
    namespace: str = "gpufleet"  # every tenant's objects live here, told apart by labels
    create_namespace: bool = True  # create `namespace` on first launch when it is missing
    instance: str = "gf"  # prefix of object names + label value: several gpufleets can share a cluster
    default_image: str | None = None  # for jobs submitted without --image (None: --image is required)
    pin_nodes: bool = True  # node affinity to gpufleet's placement; False: kube-scheduler places
    gpu_resource: str = "nvidia.com/gpu"
    product_label: str = "nvidia.com/gpu.product"  # GPU Feature Discovery
    memory_label: str = "nvidia.com/gpu.memory"  # MiB, GPU Feature Discovery
    node_selector: str | None = None  # label selector of the nodes gpufleet manages (None: any with GPUs)
    cluster_domain: str = "cluster.local"
    delete_propagation: str = "Foreground"  # or "Background"
    tolerations: tuple[Mapping[str, str], ...] = DEFAULT_TOLERATIONS
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None  # its token is never mounted into job pods
    # Pods run as the uid/gid of the owner's Unix account (the server's `accounts` mapping, same
    # name by default, looked up on the server host; a numeric value in the mapping is the uid and
    # gid itself), with runAsNonRoot. A job whose owner maps to no account, or to root, fails at
    # launch. False: pods run as their image's user.
    run_as_user: bool = False
    priority_class: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    ttl_after_finished_s: int | None = None  # Job ttlSecondsAfterFinished (needs K8s >= 1.21 or a gate)
    start_timeout_s: float | None = 900.0  # STARTING longer than this (unschedulable, image pull) -> FAILED
    adopt_grace_s: float = 60.0  # a launched job without objects for this long is LOST
    watch_timeout_s: int = 240  # server-side watch timeout; the watch then resumes from its version
    request_timeout_s: float = 30.0
    container_name: str = "main"
    # $GPUFLEET_CHECKPOINT_DIR: a volume shared by every node, {"claim": PVC name} (ReadWriteMany
    # for gangs) or {"host_path": path} (a shared filesystem mounted at that path on every node);
    # each job gets its own subPath of it, <instance>-<job id>-<submitted ms>, the same for every
    # attempt, mounted at `checkpoint_mount` in every rank. None: no checkpoint directory.
    checkpoint_volume: Mapping[str, str] | None = None
    checkpoint_mount: str = "/gpufleet/checkpoints"
    # Where THIS server sees the same volume (an NFS mount of it, or the host path on a one-node
    # cluster), for `last_checkpoint` (lost GPU-hours counted from the newest checkpoint write);
    # None: the server cannot see it (lost time counted from the attempt's start).
    checkpoint_server_path: str | None = None
    # perf jobs (executors/kubernetes/perf.py): the `gpufleet` inside the image that runs `perf
    # prolog|sample|epilog` around the command, and a fake NVML spec file for GPU-less nodes ("" = real)
    gpufleet_bin: str = "gpufleet"
    perf_fake_nvml: str = ""

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.instance) or len(self.instance) > 20:
            raise ValidationError("instance", f"{self.instance!r} must be a DNS label of at most 20 chars")
        if not _DNS_LABEL.match(self.namespace):
            raise ValidationError("namespace", f"{self.namespace!r} is not a valid Kubernetes namespace")
        if self.delete_propagation not in ("Foreground", "Background"):
            raise ValidationError("delete_propagation", "must be Foreground or Background")
        _check_checkpoint(self)

    def checkpoint_subpath(self, job_id: int, submitted_at: float) -> str | None:
        """The job's folder in the checkpoint volume, from server-side values only (the DNS-label
        instance, the integer id, the submit time), like the Slurm engine's checkpoint_dir: a job
        of another gpufleet or of an earlier database that reused the id never finds it."""
        if self.checkpoint_volume is None:
            return None
        return f"{self.instance}-{int(job_id)}-{int(submitted_at * 1000)}"

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "KubernetesConfig":
        """From the `kubernetes:` settings (YAML / flags); unknown keys are an error naming the key."""
        known = {f.name: f for f in fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in (options or {}).items():
            name = key.replace("-", "_")
            if name not in known:
                raise ValidationError(f"kubernetes.{key}", f"unknown option (known: {', '.join(sorted(known))})")
            if name in ("tolerations", "image_pull_secrets") and value is not None:
                value = tuple(value)
            if name == "checkpoint_volume" and isinstance(value, Mapping):
                value = {str(k).replace("-", "_"): v for k, v in value.items()}
            kw[name] = value
        return cls(**kw)


def _abs_path(field_name: str, value: object) -> str:
    """An absolute, normalised path other than `/` (no `..`, no `:` for the container runtime)."""
    if not isinstance(value, str) or not value.startswith("/") or ":" in value:
        raise ValidationError(field_name, f"must be an absolute path without ':', got {value!r}")
    norm = posixpath.normpath(value)
    if norm == "/" or norm != value.rstrip("/") or ".." in value.split("/"):
        raise ValidationError(field_name, f"must be a normalised absolute path other than /, got {value!r}")
    return norm


def _check_checkpoint(cfg: KubernetesConfig) -> None:
    vol = cfg.checkpoint_volume
    name = "kubernetes.checkpoint_volume"
    if vol is not None:
        if not isinstance(vol, Mapping) or len(vol) != 1 or set(vol) - {"claim", "host_path"}:
            raise ValidationError(name, f"must be {{claim: PVC name}} or {{host_path: /shared/path}}, got {vol!r}")
        (kind, value), = vol.items()
        if kind == "claim":
            if not isinstance(value, str) or not _DNS_SUBDOMAIN.match(value) or len(value) > 253:
                raise ValidationError(f"{name}.claim", f"{value!r} is not a PersistentVolumeClaim name")
        else:
            _abs_path(f"{name}.host_path", value)
    _abs_path("kubernetes.checkpoint_mount", cfg.checkpoint_mount)
    if cfg.checkpoint_server_path is not None:
        if vol is None:
            raise ValidationError("kubernetes.checkpoint_server_path", "needs kubernetes.checkpoint_volume")
        _abs_path("kubernetes.checkpoint_server_path", cfg.checkpoint_server_path)
