"""Settings of the Kubernetes executor (injected by main.py; nothing here reads the environment)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from gpufleet.domain import ValidationError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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
            kw[name] = value
        return cls(**kw)
