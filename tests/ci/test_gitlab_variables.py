"""The custom executor's inputs: CUSTOM_ENV_* variables, failure codes, the allocation's spec."""

import pytest

from gpufleet.ci.gitlab.variables import (
    allocation_spec, ci_job_id, ci_vars, failure_codes, idempotency_key, perf_requested, var_for,
)
from gpufleet.domain import ValidationError
from gpufleet.domain.spec import build_spec

CMD = ["python", "-m", "gpufleet.ci.gitlab.agent"]


def test_ci_variables_are_the_custom_env_ones_without_prefix():
    env = {"CUSTOM_ENV_CI_JOB_ID": "12", "CUSTOM_ENV_GPUFLEET_GPUS": "2", "CI_JOB_ID": "99", "PATH": "/bin"}
    assert ci_vars(env) == {"CI_JOB_ID": "12", "GPUFLEET_GPUS": "2"}


def test_failure_codes_come_from_the_runner_with_documented_defaults():
    assert failure_codes({"BUILD_FAILURE_EXIT_CODE": "41", "SYSTEM_FAILURE_EXIT_CODE": "42"}) == (41, 42)
    assert failure_codes({}) == (1, 2)
    assert failure_codes({"BUILD_FAILURE_EXIT_CODE": "x"}) == (1, 2)


@pytest.mark.parametrize("bad", ["", "../1", "12a", "1" * 21])
def test_ci_job_id_must_be_numeric(bad):
    with pytest.raises(ValidationError) as e:
        ci_job_id({"CI_JOB_ID": bad})
    assert e.value.field == "CI_JOB_ID"


def test_spec_takes_the_gpufleet_variables_and_only_label_facts_of_the_ci_job():
    ci = {"CI_JOB_ID": "5", "CI_PROJECT_PATH_SLUG": "lab-k", "CI_PROJECT_PATH": "lab/k", "CI_COMMIT_SHA": "abc",
          "GPUFLEET_GPUS": "2", "GPUFLEET_GPU_MODEL": "a100", "GPUFLEET_CONSTRAINT": "driver=560.35",
          "GPUFLEET_NODES": "1", "GPUFLEET_TENANT": "vision", "GPUFLEET_TIME_LIMIT": "30m",
          "GPUFLEET_IMAGE": "cuda:12", "SECRET_TOKEN": "s3cret", "GPUFLEET_TOKEN": "t0ken"}
    spec = allocation_spec(ci, CMD, "/b/.gpufleet/5", "1h")
    assert spec == {"command": CMD, "workdir": "/b/.gpufleet/5", "requeue": False, "name": "gitlab-lab-k-5",
                    "gpus": "2", "gpu_model": "a100", "constraint": "driver=560.35", "nodes": "1",
                    "tenant": "vision", "time_limit": "30m", "image": "cuda:12",
                    "env": {"GPUFLEET_CI_PROJECT": "lab/k", "GPUFLEET_CI_JOB": "5", "GPUFLEET_CI_COMMIT": "abc"}}
    assert "s3cret" not in repr(spec) and "t0ken" not in repr(spec)
    built = build_spec(spec)
    assert (built.gpus, built.gpu_model, built.constraints, built.time_limit_s) == (2, "a100", {"driver": "560.35"}, 1800)


def test_time_limit_follows_the_ci_job_timeout_else_the_runner_default():
    assert allocation_spec({"CI_JOB_ID": "1", "CI_JOB_TIMEOUT": "3600"}, CMD, "/w", "1h")["time_limit"] == 3900
    assert allocation_spec({"CI_JOB_ID": "1"}, CMD, "/w", "2h")["time_limit"] == "2h"
    assert "time_limit" not in allocation_spec({"CI_JOB_ID": "1"}, CMD, "/w", None)


def test_idempotency_key_is_one_per_ci_job_and_of_allowed_characters():
    key = idempotency_key({"CI_JOB_ID": "77", "CI_SERVER_HOST": "git lab.example.com;x"})
    assert key == "gitlab:git_lab.example.com_x:77"


def test_perf_and_error_names():
    assert perf_requested({"GPUFLEET_PERF": "1"}) and not perf_requested({})
    assert var_for("gpus") == "GPUFLEET_GPUS" and var_for("CI_JOB_ID") == "CI_JOB_ID" and var_for(None) == "spec"
