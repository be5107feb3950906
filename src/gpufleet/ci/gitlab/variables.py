"""The custom executor's inputs: CI job variables (`CUSTOM_ENV_<NAME>`), the failure exit codes,
and the allocation's job spec built from the GPUFLEET_* CI variables. Pure functions of the
environment they are given."""

from __future__ import annotations

import re
from typing import Any, Mapping

from gpufleet.domain import ValidationError

CUSTOM_ENV = "CUSTOM_ENV_"  # the runner passes every job variable as CUSTOM_ENV_<NAME>
SPEC_VARS = {  # CI variable -> job spec field
    "GPUFLEET_GPUS": "gpus", "GPUFLEET_GPU_MODEL": "gpu_model", "GPUFLEET_CONSTRAINT": "constraint",
    "GPUFLEET_NODES": "nodes", "GPUFLEET_TENANT": "tenant", "GPUFLEET_TIME_LIMIT": "time_limit",
    "GPUFLEET_IMAGE": "image",
}
FIELD_VARS = {field: var for var, field in SPEC_VARS.items()}
LABEL_VARS = {  # non-secret CI facts the allocation carries in its env (as labels would)
    "GPUFLEET_CI_PROJECT": "CI_PROJECT_PATH", "GPUFLEET_CI_PIPELINE": "CI_PIPELINE_ID",
    "GPUFLEET_CI_JOB": "CI_JOB_ID", "GPUFLEET_CI_COMMIT": "CI_COMMIT_SHA",
}
TIMEOUT_MARGIN_S = 300  # the allocation outlives the CI job's own timeout by this much
_DIGITS = re.compile(r"[0-9]{1,20}")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:+/=-]")


def ci_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The CI job's variables: CUSTOM_ENV_X=v -> {"X": "v"}."""
    return {k[len(CUSTOM_ENV):]: v for k, v in environ.items() if k.startswith(CUSTOM_ENV)}


def failure_codes(environ: Mapping[str, str]) -> tuple[int, int]:
    """(BUILD_FAILURE_EXIT_CODE, SYSTEM_FAILURE_EXIT_CODE) as the runner gave them."""
    return _code(environ, "BUILD_FAILURE_EXIT_CODE", 1), _code(environ, "SYSTEM_FAILURE_EXIT_CODE", 2)


def _code(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "")
    return int(value) if value.isdigit() else default


def ci_job_id(ci: Mapping[str, str]) -> str:
    """CI_JOB_ID, checked: it names a directory."""
    value = ci.get("CI_JOB_ID", "")
    if not _DIGITS.fullmatch(value):
        raise ValidationError("CI_JOB_ID", f"must be the CI job's numeric id, got {value!r}")
    return value


def idempotency_key(ci: Mapping[str, str]) -> str:
    """One allocation per CI job, also when prepare is retried after a connection error."""
    server = _KEY_CHARS.sub("_", ci.get("CI_SERVER_HOST", "gitlab"))[:64]
    return f"gitlab:{server}:{ci_job_id(ci)}"


def perf_requested(ci: Mapping[str, str]) -> bool:
    return ci.get("GPUFLEET_PERF", "").strip().lower() in ("1", "true", "yes")


def allocation_spec(ci: Mapping[str, str], command: list[str], workdir: str,
                    default_time_limit: str | None) -> dict[str, Any]:
    """The allocation's job spec: the agent as command, the GPUFLEET_* CI variables as fields,
    a time limit (GPUFLEET_TIME_LIMIT, else the CI job's timeout plus a margin, else the runner's
    default), and the CI facts as GPUFLEET_CI_* env. No other CI variable is stored."""
    spec: dict[str, Any] = {"command": command, "workdir": workdir, "requeue": False,
                            "name": _name(ci)}
    for var, field in SPEC_VARS.items():
        if ci.get(var, "").strip():
            spec[field] = ci[var].strip()
    if "time_limit" not in spec:
        timeout = ci.get("CI_JOB_TIMEOUT", "")
        if timeout.isdigit():
            spec["time_limit"] = int(timeout) + TIMEOUT_MARGIN_S
        elif default_time_limit:
            spec["time_limit"] = default_time_limit
    spec["env"] = {k: ci[v] for k, v in LABEL_VARS.items() if ci.get(v) and "\n" not in ci[v]}
    return spec


def _name(ci: Mapping[str, str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", ci.get("CI_PROJECT_PATH_SLUG", ""))[:80].strip("-.")
    return f"gitlab-{slug}-{ci_job_id(ci)}" if slug else f"gitlab-{ci_job_id(ci)}"


def var_for(field: str | None) -> str:
    """The CI variable a spec field came from, for error messages."""
    return FIELD_VARS.get(field or "", field or "spec")
