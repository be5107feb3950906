"""Bad input the CLI catches itself (exit 2, one line naming the field, no traceback), and the
answers that must not look like success."""

import json

import pytest

from gpufleet.cli.health import passed_line
from tests.cli.test_cli_errors import run


def one_error_line(r, field):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_yaml_file_is_an_error_not_a_command(tmp_path):
    one_error_line(run("submit", str(tmp_path / "nosuchfile.yaml")), "file")
    one_error_line(run("submit", "job.yml"), "file")


def test_after_dashdash_a_yaml_name_is_a_command():
    r = run("submit", "--", "nosuchfile.yaml")
    assert r.returncode == 1 and "cannot reach gpufleet" in r.stderr  # it got as far as the server


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "command: *i\n"


@pytest.mark.parametrize("text,why", [
    (LAUGHS, "aliases"),
    ("command: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("command: [true]\nname: " + "x" * (1024 * 1024) + "\n", "larger than"),
    ("command: [true]\n\tgpus: 1\n", "not valid YAML"),
])
def test_hostile_job_files_exit_2_quickly(tmp_path, text, why):
    f = tmp_path / "job.yaml"
    f.write_text(text)
    r = run("submit", str(f))
    one_error_line(r, "file")
    assert why in r.stderr


@pytest.mark.parametrize("args,field", [
    (["submit", "--name", "job\n", "--", "true"], "name"),
    (["submit", "--env", "A=1\n#SBATCH --qos=high", "--", "true"], "env"),
    (["submit", "-C", "/tmp\n#SBATCH --exclusive", "--", "true"], "workdir"),
])
def test_newlines_and_oversized_arguments_exit_2(args, field):
    one_error_line(run(*args), field)


def test_an_argument_over_the_os_limit_exits_2(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text(f"command: [echo, {'x' * 131073}]\n")  # the CLI's own argv could not carry it
    one_error_line(run("submit", str(f)), "command")
    f.write_text('command: [echo, "a\\0b"]\n')
    one_error_line(run("submit", str(f)), "command")


def test_health_run_says_when_checks_were_skipped():
    ok = {"status": "ok", "message": "ok", "facts": {}}
    skip = {"status": "ok", "message": "skipped: NVML not configured", "facts": {"skipped": True}}
    assert passed_line([ok] * 9) == "all 9 checks pass"
    assert passed_line([ok, ok] + [skip] * 7) == "2 checks pass, 7 skipped (NVML not configured)"


def test_cancel_of_a_finished_job_exits_1_and_says_so(gf_server):
    api = gf_server.server
    r = gf_server.cli("submit", "-e", "GPUFLEET_FAKE_SECONDS=1", "--", "true")
    assert r.returncode == 0, r.stderr
    job = int(r.stdout)
    api.loop.cycle()
    api.executor.clock.advance(2)
    api.loop.cycle()
    r = gf_server.cli("cancel", str(job))
    assert r.returncode == 1
    assert r.stderr.strip() == f"job {job} already finished (SUCCEEDED)"
    assert "succeeded" not in r.stdout
    pending = int(gf_server.cli("submit", "--gpus", "8", "--gpu-model", "a100", "--", "true").stdout)
    r = gf_server.cli("cancel", str(pending))
    assert r.returncode == 0 and r.stdout.strip() == f"{pending} cancelled"


def test_huge_job_id_is_exit_2_naming_it(gf_server):
    r = gf_server.cli("show", str(2**63))
    one_error_line(r, "job_id")


def test_submit_with_an_idempotency_key_prints_the_same_job(gf_server):
    a = gf_server.cli("submit", "--idempotency-key", "nightly-2026-01-01", "--", "true")
    b = gf_server.cli("submit", "--idempotency-key", "nightly-2026-01-01", "--", "true")
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout
    c = gf_server.cli("submit", "--", "true")  # a fresh key by default
    assert int(c.stdout) != int(a.stdout)
    one_error_line(gf_server.cli("submit", "--idempotency-key", "bad key", "--", "true"), "Idempotency-Key")


@pytest.mark.parametrize("args,field", [
    (["submit", "--matrix", "sku", "--", "true"], "matrix"),
    (["submit", "--matrix", "sku=a", "--matrix", "sku=b", "--", "true"], "matrix"),
    (["submit", "--array", "5-1", "--", "true"], "array"),
    (["submit", "--array", "0-9%0", "--", "true"], "array"),
    (["submit", "--dependency", "before:1", "--", "true"], "dependency"),
    (["submit", "--artifact", "/etc/passwd", "--", "true"], "artifacts"),
    (["submit", "--artifact", "../up", "--", "true"], "artifacts"),
    (["submit", "--flash", "--", "true"], "board.image"),
    (["artifacts", "get"], "artifacts"),
    (["artifacts", "nonsense", "1"], "artifacts"),
])
def test_bad_group_dependency_and_artifact_input_exits_2_before_any_request(args, field):
    one_error_line(run(*args), field)


def test_board_flags_mirror_the_board_field_of_the_spec(gf_server):
    r = gf_server.cli("submit", "--board-image", "jetpack-6.0", "--flash", "--no-power-cycle", "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    job = json.loads(gf_server.cli("show", str(json.loads(r.stdout)["id"]), "--json").stdout)
    assert job["request"]["board"] == {"image": "jetpack-6.0", "flash": True, "power_cycle": False}
