"""Deterministic object names and the labels by which gpufleet finds its objects again.

Names derive only from (instance, job id, attempt), so a second `launch` of the same job (after a
crash) targets the same objects and gets 409 AlreadyExists instead of creating a duplicate.
"""

from __future__ import annotations

import re

from gpufleet.domain import Job

MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "gpufleet.io/instance"
JOB_ID = "gpufleet.io/job-id"
ATTEMPT = "gpufleet.io/attempt"
TENANT = "gpufleet.io/tenant"
USER = "gpufleet.io/user"
RANK = "gpufleet.io/rank"
KIND = "gpufleet.io/kind"  # "job" (batch/v1 Job) or "gang" (pods + headless Service)
JOB_NAME_ANN = "gpufleet.io/job-name"
STOPPED_ANN = "gpufleet.io/stopped-because"  # a rank gpufleet stopped because another one ended
DRAIN_TAINT = "gpufleet.io/drain"
DRAIN_REASON_ANN = "gpufleet.io/drain-reason"

_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """Any text as a valid label value (<= 63 chars, alphanumeric at both ends)."""
    v = _BAD.sub("_", text)[:63].strip("_.-")
    return v


def base_name(instance: str, job: Job) -> str:
    """`gf-42` for the first run of job 42, `gf-42-r1` after one requeue."""
    suffix = f"-r{job.restarts}" if job.restarts else ""
    return f"{instance}-{job.id}{suffix}"


def pod_name(base: str, rank: int) -> str:
    return f"{base}-{rank}"


def is_gang(job: Job) -> bool:
    return len(job.allocation) > 1 or job.spec.nodes > 1


def selector(instance: str, job: Job | None = None) -> str:
    sel = f"{INSTANCE}={instance}"
    if job is not None:
        sel += f",{JOB_ID}={job.id},{ATTEMPT}={job.restarts}"
    return sel


def labels(instance: str, job: Job) -> dict[str, str]:
    return {
        MANAGED_BY: "gpufleet",
        INSTANCE: instance,
        JOB_ID: str(job.id),
        ATTEMPT: str(job.restarts),
        TENANT: label_value(job.spec.tenant),
        USER: label_value(job.user),
        KIND: "gang" if is_gang(job) else "job",
    }
