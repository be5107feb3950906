"""The executor contract: ONE suite that every engine (local, fake, slurm, kubernetes) passes.

Use it for an engine by subclassing (see test_local.py and test_fake.py):

    # in tests/executors/<engine>/test_<engine>.py (pyproject sets pythonpath = ["."]):
    from tests.executors.contract import ExecutorContract

    class TestMyEngineContract(ExecutorContract):
        RUNS_COMMANDS = True        # the engine really runs the command: rank env is checked in logs

        @pytest.fixture
        def executor(self):         # a fresh engine for one test; close it afterwards
            ex = MyExecutor(...); yield ex; ex.close()

        @pytest.fixture
        def nodes(self):            # list[Allocation]: 2+ nodes, each with GPU indices it may use
            return [Allocation("n1", (0,)), Allocation("n2", (1,))]

        def reopen(self, executor): # a NEW instance on the same backing: what a restarted server sees
            return MyExecutor(...)

A test job is described abstractly by the `make_job` fixture: `make_job(seconds=0.5, exit_code=3,
output="hi $NODE_RANK", ranks=2, time_limit_s=1)` (seconds=None: runs until stopped). It is conveyed
BOTH as the command `sh -c 'echo "<output>"; sleep <seconds>; exit <code>'` AND as the env vars
GPUFLEET_FAKE_SECONDS / GPUFLEET_FAKE_EXIT / GPUFLEET_FAKE_OUTPUT, so engines where nothing really
executes (the fake, a fake kubelet) behave the same. `output` is plain text; it may use $VARS (the
shell expands them) but no quotes, backslashes or backticks. Jobs made are cancelled at teardown.

Knobs (class attributes): RUNS_COMMANDS, TIME_LIMIT_S (the limit the time-limit case sets), SLACK_S
(how long to wait beyond what the job itself takes), POLL_S, CANCEL_PHASES (what cancel may end as),
CANCELLED_LOGS_KEPT (whether a cancelled attempt's logs stay readable).
IMAGE: an image holding /gpufleet-image-marker (scripts/dev-images.sh builds localhost/gpufleet-test)
for the container cases; None (or an engine without Ability.IMAGES) skips them. `containers_left()`
names the job's containers still there after a cancel (None: the engine cannot tell).
Engines whose time is not wall time override `clock()` and `sleep()`; `times_started()` proves
"launch twice -> runs once" (default: count the job's output line in rank 0's log). An engine that
cannot do one case overrides that test method with `pytest.skip("why")`.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Callable, Collection, Iterator

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import Ability, Executor, LogChunk, Observation, Phase, master_port_for

FOREVER_S = 600  # "runs until stopped" in the shell form
_ids = itertools.count(int(time.time() * 1000) % 1_000_000_000)


def wait_for(
    executor: Executor,
    job: Job,
    phases: Collection[Phase],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.05,
) -> Observation:
    """Poll `job` until its phase is one of `phases`; fail at `timeout`, or at once when it ended
    in a phase not asked for. Returns the observation."""
    deadline = clock() + timeout
    last: Observation | None = None
    while True:
        for obs in executor.poll([job]):
            if obs.job_id == job.id:
                last = obs
                if obs.handle and not job.handle:
                    job.handle = obs.handle
        if last is not None and last.phase in phases:
            return last
        if last is not None and last.phase.ended:
            raise AssertionError(f"job {job.id} ended {last} while waiting for {sorted(phases)}")
        if clock() >= deadline:
            raise AssertionError(f"job {job.id}: no {sorted(phases)} within {timeout}s; last: {last}")
        sleep(interval)


def build_job(job_id: int, allocation: list[Allocation], *, seconds: float | None = 0,
              exit_code: int = 0, output: str = "", time_limit_s: int | None = None,
              restarted_seconds: float | None = None, image: str | None = None,
              mounts: tuple[str, ...] = ()) -> Job:
    """A RUNNING job (as the control loop hands it to `launch`) that behaves as described.
    `restarted_seconds` given: attempts after the first (GPUFLEET_RESTART_COUNT > 0) run that long."""
    if re.search(r'["\\`]', output):
        raise ValueError("test output may not hold quotes, backslashes or backticks")
    script = f'echo "{output}"; ' if output else ""
    sleep = f"sleep {FOREVER_S if seconds is None else format(seconds, 'g')}"
    if restarted_seconds is not None:
        sleep = (f'if [ "$GPUFLEET_RESTART_COUNT" = 0 ]; then {sleep}; '
                 f"else sleep {format(restarted_seconds, 'g')}; fi")
    script += f"{sleep}; exit {exit_code}"
    env = {"GPUFLEET_FAKE_EXIT": str(exit_code), "GPUFLEET_FAKE_OUTPUT": output}
    if seconds is not None:
        env["GPUFLEET_FAKE_SECONDS"] = format(seconds, "g")
    if restarted_seconds is not None:
        env["GPUFLEET_FAKE_RESTARTED_SECONDS"] = format(restarted_seconds, "g")
    spec = JobSpec(command=("sh", "-c", script), gpus=len(allocation[0].gpus), nodes=len(allocation),
                   time_limit_s=time_limit_s, name=f"contract-{job_id}", env=env, image=image,
                   mounts=tuple(mounts))
    return Job(job_id, spec, state=JobState.RUNNING, allocation=tuple(allocation),
               submitted_at=time.time(), started_at=time.time())


def read_logs(executor: Executor, job: Job, rank: int = 0, timeout: float = 10.0,
              sleep: Callable[[float], None] = time.sleep, attempt: int | None = None) -> bytes:
    """All of a rank's output (of `attempt`; None: the latest), reading until it is complete."""
    data, offset = b"", 0
    deadline = time.monotonic() + timeout
    while True:
        chunk: LogChunk = executor.logs(job, offset, rank, attempt=attempt)
        data, offset = data + chunk.data, chunk.offset
        if chunk.complete or time.monotonic() >= deadline:
            return data
        if not chunk.data:
            sleep(0.05)


class ExecutorContract:
    RUNS_COMMANDS = True
    TIME_LIMIT_S = 1
    SLACK_S = 15.0
    POLL_S = 0.05
    CANCEL_PHASES: frozenset[Phase] = frozenset({Phase.CANCELLED})
    CANCELLED_LOGS_KEPT = True  # False: cancel removes the engine's objects and their logs (Kubernetes)
    IMAGE: str | None = None  # an image with /gpufleet-image-marker: the container cases run
    IMAGE_MARKER = "gpufleet-test-image"  # what that file holds

    # -- what an engine provides -------------------------------------------------------------------
    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        raise NotImplementedError("the engine's test class provides the `executor` fixture")

    @pytest.fixture
    def nodes(self) -> list[Allocation]:
        raise NotImplementedError("the engine's test class provides the `nodes` fixture")

    def reopen(self, executor: Executor) -> Executor:
        raise NotImplementedError("a new executor instance on the same backing (a restart)")

    def clock(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def containers_left(self, executor: Executor, job: Job) -> list[str] | None:
        """The job's containers the engine still has (running or not); None: cannot tell."""
        return None

    def mount_source(self, tmp_path: Path) -> Path:
        """A host directory holding in.txt (engines whose jobs run as another account override
        this with a place that account can read)."""
        src = tmp_path / "mount-src"
        src.mkdir()
        (src / "in.txt").write_text("mounted-data\n")
        return src

    def times_started(self, executor: Executor, job: Job) -> int | None:
        """How many times the job really started (None: this engine cannot tell)."""
        if not (self.RUNS_COMMANDS and Ability.LOGS in executor.abilities):
            return None
        marker = job.spec.env["GPUFLEET_FAKE_OUTPUT"]
        return read_logs(executor, job).decode().splitlines().count(marker)

    # -- helpers -----------------------------------------------------------------------------------
    @pytest.fixture
    def make_job(self, executor: Executor, nodes: list[Allocation]) -> Iterator[Callable[..., Job]]:
        made: list[Job] = []

        def build(seconds: float | None = 0, exit_code: int = 0, output: str = "", ranks: int = 1,
                  time_limit_s: int | None = None, restarted_seconds: float | None = None,
                  image: str | None = None, mounts: tuple[str, ...] = ()) -> Job:
            assert len(nodes) >= ranks, f"the `nodes` fixture has fewer than {ranks} nodes"
            job = build_job(next(_ids), nodes[:ranks], seconds=seconds, exit_code=exit_code,
                            output=output, time_limit_s=time_limit_s, restarted_seconds=restarted_seconds,
                            image=image, mounts=mounts)
            made.append(job)
            return job

        yield build
        for job in made:  # leave nothing running in a real engine
            try:
                executor.cancel(job)
            except Exception:  # noqa: BLE001 - best effort
                pass

    def wait(self, executor: Executor, job: Job, phases: Collection[Phase], timeout: float) -> Observation:
        return wait_for(executor, job, phases, timeout, clock=self.clock, sleep=self.sleep,
                        interval=self.POLL_S)

    def wait_for_output(self, executor: Executor, job: Job, text: str, ranks: int = 1) -> None:
        deadline = self.clock() + self.SLACK_S
        for rank in range(ranks):
            while text not in executor.logs(job, 0, rank).data.decode(errors="replace"):
                assert self.clock() < deadline, f"rank {rank} of job {job.id} never printed {text!r}"
                self.sleep(self.POLL_S)

    def launch(self, executor: Executor, job: Job) -> str | None:
        job.handle = executor.launch(job) or job.handle
        return job.handle

    # -- the contract ------------------------------------------------------------------------------
    def test_success_reports_exit_0_and_logs(self, executor, make_job):
        job = make_job(seconds=0, exit_code=0, output="hello from gpufleet")
        self.launch(executor, job)
        obs = self.wait(executor, job, {Phase.SUCCEEDED}, self.SLACK_S)
        assert obs.exit_code == 0
        if Ability.LOGS in executor.abilities:
            assert b"hello from gpufleet" in read_logs(executor, job, sleep=self.sleep)
        executor.cancel(job)  # cancelling an ended job is fine and changes nothing
        assert [o.phase for o in executor.poll([job])] == [Phase.SUCCEEDED]

    def test_nonzero_exit_fails_with_its_code(self, executor, make_job):
        job = make_job(seconds=0, exit_code=3, output="about to fail")
        self.launch(executor, job)
        obs = self.wait(executor, job, {Phase.FAILED}, self.SLACK_S)
        assert obs.exit_code == 3
        assert obs.reason

    def test_time_limit_gives_timeout(self, executor, make_job):
        job = make_job(seconds=None, time_limit_s=self.TIME_LIMIT_S)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.TIMEOUT}, self.TIME_LIMIT_S + self.SLACK_S)

    def test_cancel_is_quick_and_ends_the_job(self, executor, make_job):
        job = make_job(seconds=None)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.RUNNING}, self.SLACK_S)
        t0 = time.monotonic()
        executor.cancel(job)
        assert time.monotonic() - t0 < 2.0, "cancel must not wait for the job to end"
        executor.cancel(job)  # idempotent
        self.wait(executor, job, self.CANCEL_PHASES, self.SLACK_S)

    def test_launch_twice_runs_once(self, executor, make_job):
        job = make_job(seconds=0.5, output="started-once")
        first = executor.launch(job)
        second = executor.launch(job)
        assert first == second
        job.handle = first
        self.wait(executor, job, {Phase.SUCCEEDED}, self.SLACK_S)
        assert executor.launch(job) == first  # even after it ended: no second run
        assert self.times_started(executor, job) in (1, None)

    def test_restarted_executor_reattaches_running_job(self, executor, make_job):
        job = make_job(seconds=3, exit_code=0, output="survivor")
        self.launch(executor, job)
        self.wait(executor, job, {Phase.RUNNING}, self.SLACK_S)
        again = self.reopen(executor)
        try:
            assert [o.phase for o in again.poll([job])] == [Phase.RUNNING]
            obs = self.wait(again, job, {Phase.SUCCEEDED}, 3 + self.SLACK_S)
            assert obs.exit_code == 0
            assert self.times_started(again, job) in (1, None)
        finally:
            again.close()

    def test_requeued_job_runs_again_as_a_new_attempt(self, executor, make_job):
        """A preempted job (attempt 1 cancelled) placed again as attempt 2 (restarts=1) really runs
        again: it ends by itself, its logs are its own, attempt 1's stay readable."""
        out = "run attempt=$GPUFLEET_ATTEMPT GPUFLEET_RESTART_COUNT=$GPUFLEET_RESTART_COUNT"
        job = make_job(seconds=None, restarted_seconds=0, output=out, ranks=2)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.RUNNING}, self.SLACK_S)
        if Ability.LOGS in executor.abilities:  # RUNNING may come before the command printed
            self.wait_for_output(executor, job, "run attempt=1", ranks=2)
        executor.cancel(job)  # the preemption
        self.wait(executor, job, self.CANCEL_PHASES, self.SLACK_S)
        job.restarts, job.handle = 1, None  # requeued (-> PENDING) and placed again (-> RUNNING)
        assert job.attempt == 2
        self.launch(executor, job)
        obs = self.wait(executor, job, {Phase.SUCCEEDED}, self.SLACK_S)
        assert obs.exit_code == 0
        assert [o.phase for o in executor.poll([job])] == [Phase.SUCCEEDED]
        if Ability.LOGS not in executor.abilities:
            return
        for rank in (0, 1):
            first = read_logs(executor, job, rank, sleep=self.sleep, attempt=1).decode()
            second = read_logs(executor, job, rank, sleep=self.sleep).decode()
            assert read_logs(executor, job, rank, sleep=self.sleep, attempt=2).decode() == second
            if first or self.CANCELLED_LOGS_KEPT:
                assert "run attempt=1 GPUFLEET_RESTART_COUNT=0" in first and "attempt=2" not in first, first
            assert "run attempt=2 GPUFLEET_RESTART_COUNT=1" in second and "attempt=1" not in second, second

    def test_two_ranks_get_their_own_rank_env(self, executor, make_job):
        out = ("rank=$NODE_RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT "
               "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES job=$GPUFLEET_JOB_ID")
        job = make_job(seconds=0, output=out, ranks=2)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.SUCCEEDED}, self.SLACK_S)
        if not (self.RUNS_COMMANDS and Ability.LOGS in executor.abilities):
            return
        seen = [_fields(read_logs(executor, job, rank)) for rank in (0, 1)]
        for rank, env in enumerate(seen):
            gpus = ",".join(str(i) for i in job.allocation[rank].gpus)
            assert env["rank"] == str(rank) and env["world"] == "2", env
            assert env["cuda"] == gpus and env["nvidia"] == gpus, env
            assert env["job"] == str(job.id), env
        assert seen[0]["master"] == seen[1]["master"]
        assert seen[0]["master"].endswith(f":{master_port_for(job.id)}")

    # -- containers (`image`) ----------------------------------------------------------------------
    def _needs_image(self, executor: Executor) -> str:
        if self.IMAGE is None or Ability.IMAGES not in executor.abilities:
            pytest.skip(f"the {executor.name} engine runs no container image in this test setup")
        return self.IMAGE

    def test_image_runs_the_command_inside_it_with_gpus_env_mounts_and_exit_code(self, executor, make_job,
                                                                                  tmp_path):
        image = self._needs_image(executor)
        src = self.mount_source(tmp_path)
        out = ("rank=$NODE_RANK world=$WORLD_SIZE marker=$(cat /gpufleet-image-marker) "
               "data=$(cat /data/in.txt) gpus=$GPUFLEET_GPUS cuda=$CUDA_VISIBLE_DEVICES job=$GPUFLEET_JOB_ID")
        job = make_job(seconds=0, exit_code=7, output=out, image=image, mounts=(f"{src}:/data:ro",))
        self.launch(executor, job)
        obs = self.wait(executor, job, {Phase.FAILED}, self.SLACK_S)
        assert obs.exit_code == 7, obs
        if not (self.RUNS_COMMANDS and Ability.LOGS in executor.abilities):
            return
        env = _fields(read_logs(executor, job, sleep=self.sleep))
        assert env["marker"] == self.IMAGE_MARKER, env  # only the image has that file
        assert env["data"] == "mounted-data", env
        planned = job.allocation[0].gpus
        assert env["rank"] == "0" and env["world"] == "1" and env["job"] == str(job.id), env
        self.check_container_gpus(env, planned)

    def check_container_gpus(self, env: dict[str, str], planned: tuple[int, ...]) -> None:
        """Inside a container only its GPUs exist, renumbered from 0: CUDA_VISIBLE_DEVICES counts
        them, GPUFLEET_GPUS keeps the host's indices."""
        assert env["gpus"] == ",".join(map(str, planned)), env
        assert env["cuda"] == ",".join(str(i) for i in range(len(planned))), env

    def test_cancel_stops_the_container(self, executor, make_job):
        image = self._needs_image(executor)
        job = make_job(seconds=None, output="container-up marker=$(cat /gpufleet-image-marker)", image=image)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.RUNNING}, self.SLACK_S)
        if Ability.LOGS in executor.abilities:
            self.wait_for_output(executor, job, f"container-up marker={self.IMAGE_MARKER}")
        executor.cancel(job)
        self.wait(executor, job, self.CANCEL_PHASES, self.SLACK_S)
        deadline = self.clock() + self.SLACK_S
        while (left := self.containers_left(executor, job)):
            assert self.clock() < deadline, f"containers still there after the cancel: {left}"
            self.sleep(self.POLL_S)


def _fields(log: bytes) -> dict[str, str]:
    line = next(ln for ln in log.decode().splitlines() if ln.startswith("rank="))
    return dict(item.split("=", 1) for item in line.split())
