"""Kubernetes engine: gpufleet's admitted, placed jobs run as Kubernetes objects (see docs/kubernetes.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.executors.kubernetes.config import KubernetesConfig
from gpufleet.executors.kubernetes.executor import KubernetesExecutor


def create(options: dict[str, Any], home: Path) -> KubernetesExecutor:
    """The composition root's factory. `options` are the `kubernetes:` settings (see KubernetesConfig):
    kubeconfig, namespace, instance, pin_nodes, default_image, run_as_user, ...; and `accounts` (the
    gpufleet user -> Unix account mapping, for run_as_user)."""
    opts = dict(options or {})
    accounts = opts.pop("accounts", None)
    return KubernetesExecutor(KubernetesConfig.from_mapping(opts), accounts=accounts)


__all__ = ["KubernetesConfig", "KubernetesExecutor", "create"]
