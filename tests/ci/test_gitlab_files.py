"""The allocation directory: stages appear whole, in order, once."""

import os

import pytest

from gpufleet.ci.gitlab.files import AllocDir


@pytest.fixture
def alloc(tmp_path):
    a = AllocDir.of(tmp_path, "9")
    a.create()
    return a


def test_layout_is_private_and_keyed_by_ci_job_id(alloc, tmp_path):
    assert alloc.path == tmp_path / ".gpufleet" / "9"
    assert os.stat(alloc.path).st_mode & 0o777 == 0o700


def test_stages_are_numbered_in_order_and_started_once(alloc):
    one = alloc.add_stage("get_sources", b"echo 1")
    two = alloc.add_stage("step_script", b"echo 2")
    assert (one.name, two.name) == ("001-get_sources", "002-step_script")
    assert one.script.read_bytes() == b"echo 1"
    assert alloc.next_stage().name == one.name
    one.output.touch()  # the agent started it
    assert alloc.next_stage().name == two.name
    two.set_exit_code(0)
    assert alloc.next_stage() is None
    assert not [p for p in (alloc.path / "stages").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("bad", ["../x", "a b", "", "x" * 65])
def test_a_stage_name_must_be_a_runner_stage(alloc, bad):
    with pytest.raises(ValueError):
        alloc.add_stage(bad, b"")


def test_state_ready_release_heartbeat(alloc):
    assert alloc.state() is None and alloc.ready() is None and not alloc.released()
    assert alloc.heartbeat_age() == float("inf")
    alloc.write_state({"job_id": 4})
    alloc.beat()
    alloc.release()
    assert alloc.state() == {"job_id": 4} and alloc.released()
    assert alloc.heartbeat_age() < 60
    (alloc.path / "state.json").write_text("{broken")
    assert alloc.state() is None
    alloc.remove()
    alloc.release()  # after removal: nothing is recreated
    assert not alloc.path.exists()
