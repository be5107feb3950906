"""Kubernetes engine: gpufleet's admitted, placed jobs run as Kubernetes objects (see docs/kubernetes.md)."""

from gpufleet.executors.kubernetes.config import KubernetesConfig
from gpufleet.executors.kubernetes.executor import KubernetesExecutor

__all__ = ["KubernetesConfig", "KubernetesExecutor"]
