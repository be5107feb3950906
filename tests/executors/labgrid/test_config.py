"""The labgrid executor's options and its view of places (no coordinator needed)."""

from __future__ import annotations

import pytest

from gpufleet.domain import NodeKind, NodeState, ValidationError
from gpufleet.domain.spec import build_spec
from gpufleet.executors.base import FOREIGN_GPUS_LABEL
from gpufleet.executors.labgrid import LabgridExecutor, parse_config
from gpufleet.executors.labgrid.coordinator import PlaceInfo, holder


def test_defaults_and_durations():
    c = parse_config({"coordinator": "farm:20408", "ssh_timeout_s": "2m", "places": "a,b", "power_cycle": True})
    assert c.coordinator == "farm:20408" and c.ssh_timeout_s == 120 and c.places == ("a", "b") and c.power_cycle
    assert parse_config({}).identity == "gpufleet"


@pytest.mark.parametrize("options,field", [
    ({"colour": "red"}, "labgrid.colour"),
    ({"ssh_timeout_s": "soon"}, "labgrid.ssh_timeout_s"),
    ({"power_cycle": "yes"}, "labgrid.power_cycle"),
    ({"places": [1]}, "labgrid.places"),
    ({"identity": "a/b"}, "labgrid.identity"),
])
def test_bad_options_name_the_option(options, field):
    with pytest.raises(ValidationError) as e:
        parse_config(options)
    assert e.value.field == field


@pytest.mark.parametrize("board,field", [
    ({"flash": True}, "board.image"),
    ({"image": "x", "flash": "yes"}, "board.flash"),
    ({"colour": 1}, "board.colour"),
    ("img", "board"),
])
def test_bad_board_spec_names_the_field(board, field):
    with pytest.raises(ValidationError) as e:
        build_spec({"command": ["true"], "board": board})
    assert e.value.field == field


def test_board_spec_round_trips():
    from gpufleet.domain.spec import spec_from_dict, spec_to_dict

    spec = build_spec({"command": ["true"], "board": {"image": "/img/l4t-36.3.img", "flash": True}})
    back = spec_from_dict(spec_to_dict(spec))
    assert back.board == spec.board and back.board.flash and back.board.power_cycle is None


class Places:
    """A coordinator that only lists places (what nodes() reads)."""

    def __init__(self, places):
        self.p = {p.name: p for p in places}
        self.released: list[str] = []

    def places(self):
        return self.p

    def release(self, name):
        self.released.append(name)
        return True

    def close(self):
        pass


def test_places_become_embedded_nodes_with_their_tags_as_labels(tmp_path):
    coord = Places([
        PlaceInfo("orin-a", {"soc": "t234", "board": "agx-orin-devkit", "jetpack": "6.0", "gpu": "Orin"}),
        PlaceInfo("orin-b", {"gpu": "orin"}, acquired="lab-pc/alice"),
        PlaceInfo("other", {}),
    ])
    ex = LabgridExecutor(parse_config({"places": ["orin-a", "orin-b"]}), tmp_path, coordinator=coord)
    nodes = {n.name: n for n in ex.nodes()}
    assert set(nodes) == {"orin-a", "orin-b"}
    a = nodes["orin-a"]
    assert a.kind is NodeKind.EMBEDDED and a.arch == "aarch64" and a.gpu_model == "orin"
    assert a.labels["soc"] == "t234" and a.labels["jetpack"] == "6.0" and a.labels["board"] == "agx-orin-devkit"
    # acquired by a person in labgrid: its GPU is held by foreign work, the scheduler places nothing there
    assert nodes["orin-b"].labels[FOREIGN_GPUS_LABEL] == "n:1"
    ex.drain("orin-a", "flaky USB")
    assert {n.name: n for n in ex.nodes()}["orin-a"].state is NodeState.DRAIN
    ex.resume("orin-a")
    assert {n.name: n for n in ex.nodes()}["orin-a"].state is NodeState.UP


def test_a_place_held_by_gpufleet_with_no_runner_behind_it_is_released(tmp_path):
    coord = Places([PlaceInfo("orin-a", {}, acquired=holder("gpufleet")), PlaceInfo("orin-b", {})])
    ex = LabgridExecutor(parse_config({}), tmp_path, coordinator=coord)
    ex.nodes()
    assert coord.released == ["orin-a"]
