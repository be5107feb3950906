"""prepare / run / cleanup with a fake server client, a fake clock and a stand-in for the agent
(whatever the agent would write into the allocation directory, written from the fake sleep)."""

from __future__ import annotations

import io as _io
from types import SimpleNamespace

import pytest

from gpufleet.ci.gitlab.files import AllocDir
from gpufleet.ci.gitlab.programs import Io, Runner, cleanup, config_output, prepare, run
from gpufleet.client import ApiError, ServerUnreachable

ENV = {"CUSTOM_ENV_CI_JOB_ID": "31", "BUILD_FAILURE_EXIT_CODE": "41", "SYSTEM_FAILURE_EXIT_CODE": "42"}


class FakeClient:
    def __init__(self, *states: tuple[str, str]):
        self.states, self.submitted, self.cancelled, self.calls = list(states), [], [], 0

    def submit(self, spec, idempotency_key=None):
        self.submitted.append((spec, idempotency_key))
        return SimpleNamespace(id=7, state="PENDING")

    def job(self, job_id):
        self.calls += 1
        state, reason = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, Exception):
            raise state
        return SimpleNamespace(id=job_id, state=state, reason=reason, nodes=["desk-001"], gpus={"desk-001": [0, 1]})

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        self.states = [("CANCELLED", "cancelled")]


class Clock:
    def __init__(self, on_sleep=None):
        self.t, self.on_sleep, self.sleeps = 0.0, on_sleep, 0

    def now(self):
        return self.t

    def sleep(self, s):
        self.t += s
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self)


def make_io(clock):
    return Io(out=_io.BytesIO(), now=clock.now, sleep=clock.sleep)


@pytest.fixture
def runner(tmp_path):
    return Runner(builds_dir=tmp_path / "builds", report_every=5.0, grace_s=1.0, release_wait=3.0)


def test_config_output_is_the_documented_json(runner):
    out = config_output(runner)
    assert out["builds_dir"] == str(runner.builds_dir) and out["driver"]["name"] == "gpufleet"
    assert set(out) == {"builds_dir", "builds_dir_is_shared", "hostname", "driver"}


def test_prepare_prints_the_pending_reason_every_few_seconds_then_waits_for_the_agent(runner):
    alloc = AllocDir.of(runner.builds_dir, "31")
    client = FakeClient(*[("PENDING", "Resources: no free orin")] * 30, ("RUNNING", ""))
    clock = Clock(on_sleep=lambda c: client.calls > 31 and alloc.write_ready({"pid": 1}))
    io = make_io(clock)
    assert prepare(runner, {**ENV, "CUSTOM_ENV_GPUFLEET_GPUS": "2"}, client, io) == 0
    log = io.out.getvalue().decode()
    assert log.count("allocation 7 pending: Resources: no free orin") == 3  # 30 polls of 0.5s, every 5s
    assert log.rstrip().endswith("allocation 7 running on desk-001 (GPUs desk-001:0,1)")
    (spec, key), = client.submitted
    assert spec["gpus"] == "2" and key == "gitlab:gitlab:31"
    assert alloc.state()["job_id"] == 7


def test_prepare_again_reuses_the_allocation(runner):
    alloc = AllocDir.of(runner.builds_dir, "31")
    alloc.create()
    alloc.write_state({"job_id": 5})
    alloc.write_ready({"pid": 1})
    client = FakeClient(("RUNNING", ""))
    assert prepare(runner, ENV, client, make_io(Clock())) == 0
    assert client.submitted == []


def test_a_bad_variable_is_a_build_failure_naming_it_and_submits_nothing(runner):
    client = FakeClient(("PENDING", ""))
    io = make_io(Clock())
    assert prepare(runner, {**ENV, "CUSTOM_ENV_GPUFLEET_NODES": "0"}, client, io) == 41
    assert io.out.getvalue() == b"error: GPUFLEET_NODES: must be >= 1, got 0\n"
    assert client.submitted == [] and not (runner.builds_dir / ".gpufleet" / "31").exists()


def test_server_refusal_is_a_build_failure_and_an_unreachable_server_a_system_failure(runner):
    class Refusing(FakeClient):
        def submit(self, spec, idempotency_key=None):
            raise self.error

    refusing = Refusing(("PENDING", ""))
    refusing.error = ApiError(422, "64 GPUs per node requested, the largest node has 8", "gpus")
    io = make_io(Clock())
    assert prepare(runner, ENV, refusing, io) == 41
    assert io.out.getvalue() == b"error: GPUFLEET_GPUS: 64 GPUs per node requested, the largest node has 8\n"
    refusing.error = ServerUnreachable("cannot reach gpufleet")
    assert prepare(runner, ENV, refusing, make_io(Clock())) == 42


def test_prepare_fails_as_system_when_the_allocation_ends_before_running(runner):
    io = make_io(Clock())
    assert prepare(runner, ENV, FakeClient(("FAILED", "launch failed: no shim")), io) == 42
    assert b"ended before it started: FAILED launch failed" in io.out.getvalue()


def test_sigterm_while_pending_ends_prepare_leaving_the_state_for_cleanup(runner):
    clock = Clock()
    io = make_io(clock)
    clock.on_sleep = lambda c: setattr(io, "terminated", True)
    assert prepare(runner, ENV, FakeClient(("PENDING", "Priority")), io) == 42
    assert AllocDir.of(runner.builds_dir, "31").state()["job_id"] == 7


def allocated(runner) -> AllocDir:
    alloc = AllocDir.of(runner.builds_dir, "31")
    alloc.create()
    alloc.write_state({"job_id": 7})
    return alloc


def agent_doing(alloc, output: bytes, code: int | None):
    """What the agent does with the next stage, on the first sleep of `run`."""
    def act(clock):
        stage = alloc.next_stage()
        if stage is not None:
            stage.output.write_bytes(output)
            if code is not None:
                stage.set_exit_code(code)
    return act


def test_run_streams_output_and_passes_the_real_exit_code_in_the_exit_code_file(runner, tmp_path):
    alloc = allocated(runner)
    script = tmp_path / "script"
    script.write_text("exit 7")
    code_file = tmp_path / "code"
    io = make_io(Clock(on_sleep=agent_doing(alloc, b"building...\n", 7)))
    env = {**ENV, "BUILD_EXIT_CODE_FILE": str(code_file)}
    assert run(runner, env, str(script), "step_script", FakeClient(("RUNNING", "")), io) == 41
    assert io.out.getvalue() == b"building...\n" and code_file.read_text() == "7\n"
    (stage,) = (alloc.path / "stages").iterdir()
    assert stage.name == "001-step_script" and (stage / "script").read_text() == "exit 7"
    io = make_io(Clock(on_sleep=agent_doing(alloc, b"ok\n", 0)))
    code_file.unlink()
    assert run(runner, env, str(script), "after_script", FakeClient(("RUNNING", "")), io) == 0
    assert not code_file.exists()


def test_run_keeps_going_while_the_server_is_unreachable(runner, tmp_path):
    alloc = allocated(runner)
    (tmp_path / "s").write_text("true")
    client = FakeClient(*[(ServerUnreachable("down"), "")] * 3, ("RUNNING", ""))
    clock = Clock()
    clock.on_sleep = lambda c: c.t > 10 and agent_doing(alloc, b"", 0)(c)
    assert run(runner, ENV, str(tmp_path / "s"), "step_script", client, make_io(clock)) == 0


def test_a_lost_allocation_is_a_system_failure(runner, tmp_path):
    allocated(runner)
    (tmp_path / "s").write_text("sleep 100")
    io = make_io(Clock())
    assert run(runner, ENV, str(tmp_path / "s"), "step_script", FakeClient(("LOST", "node down")), io) == 42
    assert b"error: allocation 7 is LOST: node down" in io.out.getvalue()


def test_run_without_an_allocation_is_a_system_failure(runner, tmp_path):
    (tmp_path / "s").write_text("true")
    io = make_io(Clock())
    assert run(runner, ENV, str(tmp_path / "s"), "build_script", FakeClient(("RUNNING", "")), io) == 42


def test_sigterm_during_run_asks_the_agent_to_stop_the_script(runner, tmp_path):
    alloc = allocated(runner)
    (tmp_path / "s").write_text("sleep 100")
    clock = Clock()
    io = make_io(clock)

    def act(c):
        io.terminated = True
        stage = next((alloc.path / "stages").iterdir())
        if (stage / "stop").exists():  # the agent stops it: TERM -> 128 + 15
            (stage / "exit.json").write_text('{"code": 143}')

    clock.on_sleep = act
    assert run(runner, ENV, str(tmp_path / "s"), "step_script", FakeClient(("RUNNING", "")), io) == 41


def test_cleanup_without_state_does_nothing(runner):
    client = FakeClient(("RUNNING", ""))
    assert cleanup(runner, ENV, client, make_io(Clock())) == 0
    assert client.calls == 0 and client.cancelled == []


def test_cleanup_releases_a_running_allocation_through_its_agent(runner):
    alloc = allocated(runner)
    alloc.write_ready({"pid": 1})
    client = FakeClient(("RUNNING", ""), ("SUCCEEDED", ""))
    assert cleanup(runner, ENV, client, make_io(Clock())) == 0
    assert client.cancelled == [] and not alloc.path.exists()


def test_cleanup_cancels_a_pending_allocation_at_once(runner):
    alloc = allocated(runner)
    client = FakeClient(("PENDING", "Resources"))
    clock = Clock()
    assert cleanup(runner, ENV, client, make_io(clock)) == 0
    assert client.cancelled == [7] and clock.t == 0 and not alloc.path.exists()


def test_cleanup_cancels_an_agent_that_does_not_end(runner):
    alloc = allocated(runner)
    alloc.write_ready({"pid": 1})
    client = FakeClient(("RUNNING", ""))
    assert cleanup(runner, ENV, client, make_io(Clock())) == 0
    assert client.cancelled == [7]


def test_an_unwritable_builds_dir_is_a_system_failure_without_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    runner = Runner(builds_dir=tmp_path / "file")  # not a directory
    io = make_io(Clock())
    assert prepare(runner, ENV, FakeClient(("PENDING", "")), io) == 42
    assert io.out.getvalue().startswith(b"error: allocation directory: ")
