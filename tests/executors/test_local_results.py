"""$GPUFLEET_RESULTS_DIR on the local engine: each rank's own directory, read back without
following a link the job planted (real processes)."""

from __future__ import annotations

import json
import os

import pytest

from gpufleet.executors.base import Ability, Phase
from gpufleet.executors.local import LocalExecutor
from tests.executors.contract import wait_for
from tests.executors.test_local import launched, shell_job

pytestmark = pytest.mark.e2e
LINE = json.dumps({"benchmark": "stream", "metric": "triad_gbs", "value": 1800.5})


@pytest.fixture
def local(tmp_path):
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0)
    yield ex
    ex.close()


def test_each_rank_writes_its_own_results_dir_and_they_are_read_back(local):
    assert Ability.RESULTS in local.abilities
    script = (f"echo '{LINE}' > \"$GPUFLEET_RESULTS_DIR/r$NODE_RANK.jsonl\"; "
              "echo '<testsuite name=s><testcase name=t/></testsuite>' > \"$GPUFLEET_RESULTS_DIR/junit.xml\"; "
              "echo ignored > \"$GPUFLEET_RESULTS_DIR/notes.txt\"")
    job = launched(local, shell_job(71, script, ranks=2))
    wait_for(local, job, {Phase.SUCCEEDED}, 10)
    files, notes = local.results(job, 1)
    assert sorted((f.rank, f.name) for f in files) == [(0, "junit.xml"), (0, "r0.jsonl"), (1, "junit.xml"), (1, "r1.jsonl")]
    assert next(f for f in files if f.name == "r1.jsonl").data.decode().strip() == LINE
    assert notes == []
    d = local.paths(71, 1).rank(0).dir / "results"
    assert oct(os.stat(d).st_mode & 0o777) == "0o700"


def test_a_link_planted_in_the_results_dir_is_not_read(local, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(LINE + "\n")
    job = launched(local, shell_job(72, f"ln -s {secret} \"$GPUFLEET_RESULTS_DIR/stolen.jsonl\""))
    wait_for(local, job, {Phase.SUCCEEDED}, 10)
    files, notes = local.results(job, 1)
    assert files == [] and notes == ["rank 0: stolen.jsonl is a symbolic link or unreadable: not read"]


def test_the_results_dir_itself_swapped_for_a_link_is_not_read(local, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jsonl").write_text(LINE + "\n")
    job = launched(local, shell_job(73, f"rm -r \"$GPUFLEET_RESULTS_DIR\"; ln -s {tmp_path / 'elsewhere'} \"$GPUFLEET_RESULTS_DIR\""))
    wait_for(local, job, {Phase.SUCCEEDED}, 10)
    files, notes = local.results(job, 1)
    assert files == [] and notes == ["rank 0: the results directory is a symbolic link: not read"]


def test_no_results_dir_no_results(local):
    job = shell_job(74, "true")
    assert local.results(job, 1) == ([], [])
