"""Deterministic object names and the labels by which gpufleet finds its objects again.

Names derive only from (instance, job id, submission time, attempt), so a second `launch` of the same
job (after a crash) targets the same objects and gets 409 AlreadyExists instead of creating a
duplicate, while a requeued job (a new attempt: `job.restarts` one higher) gets new objects and
really runs again; the objects of earlier attempts (and their pod logs) are left as they ended. The
submission-time tag keeps a job 42 of a fresh gpufleet database from adopting the leftovers of an
older job 42 in the same namespace. The `gpufleet.io/attempt` label holds the restart count
(attempt - 1, as GPUFLEET_RESTART_COUNT), kept so for objects made by earlier versions.
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
TAG = "gpufleet.io/job-tag"  # from the job's submission time: tells apart jobs with the same id
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


def job_tag(job: Job) -> str:
    """5 base-36 chars from the submission time in ms: stable across store round trips."""
    ms = int(round(job.submitted_at * 1000)) % 36**5
    out = ""
    for _ in range(5):
        ms, d = divmod(ms, 36)
        out = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + out
    return out


def job_key(job: Job) -> tuple[int, int, str]:
    """What the watch cache files a job attempt's objects under: (job id, attempt, tag)."""
    return job.id, job.restarts, job_tag(job)


def base_name(instance: str, job: Job) -> str:
    """`gf-42-0k3xz` for the first run of job 42, `gf-42-0k3xz-r1` after one requeue."""
    suffix = f"-r{job.restarts}" if job.restarts else ""
    return f"{instance}-{job.id}-{job_tag(job)}{suffix}"


def pod_name(base: str, rank: int) -> str:
    return f"{base}-{rank}"


def is_gang(job: Job) -> bool:
    return len(job.allocation) > 1 or job.spec.nodes > 1


def selector(instance: str, job: Job | None = None) -> str:
    sel = f"{INSTANCE}={instance}"
    if job is not None:
        sel += f",{JOB_ID}={job.id},{ATTEMPT}={job.restarts},{TAG}={job_tag(job)}"
    return sel


def labels(instance: str, job: Job) -> dict[str, str]:
    return {
        MANAGED_BY: "gpufleet",
        INSTANCE: instance,
        JOB_ID: str(job.id),
        ATTEMPT: str(job.restarts),
        TAG: job_tag(job),
        TENANT: label_value(job.spec.tenant),
        USER: label_value(job.user),
        KIND: "gang" if is_gang(job) else "job",
    }
