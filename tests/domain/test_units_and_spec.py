import pytest

from gpufleet.domain import ValidationError, parse_duration, parse_mem_mb
from gpufleet.domain.spec import build_spec, spec_from_dict, spec_to_dict
from gpufleet.domain.units import format_duration, parse_time


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("30m", 1800), ("4h", 14400), ("1d", 86400), ("01:02:03", 3723), ("10:00", 600),
    ("1-00:00:01", 86401), (45, 45), ("1.5h", 5400), ("2w", 1209600),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["abc", "0", "-5m", "1:99:00", "h", "10x", True])
def test_bad_durations_name_the_field(bad):
    with pytest.raises(ValidationError) as e:
        parse_duration(bad, "time_limit")
    assert e.value.field == "time_limit"


@pytest.mark.parametrize("text,mb", [("16G", 16384), ("512M", 512), ("1T", 1048576), ("16GiB", 16384), (100, 100)])
def test_sizes(text, mb):
    assert parse_mem_mb(text) == mb


def test_format_duration():
    assert format_duration(59) == "0:59"
    assert format_duration(3723) == "01:02:03"
    assert format_duration(90061) == "1-01:01:01"


def test_parse_time():
    assert parse_time("now", 100.0) == 100.0
    assert parse_time("+2h", 100.0) == 7300.0
    assert parse_time("1970-01-01T00:01:00", 0) == 60.0
    with pytest.raises(ValidationError):
        parse_time("tomorrow-ish", 0)


def test_spec_round_trip_and_defaults():
    s = build_spec({"command": "python train.py --lr 0.1", "gpus": "2", "nodes": 2, "gpu_model": "A100",
                    "time_limit": "2h", "mem": "16G", "env": ["A=1", "B=x=y"],
                    "constraint": "driver=560.35,kind=server"}, default_tenant="vision")
    assert s.command == ("python", "train.py", "--lr", "0.1")
    assert (s.gpus, s.nodes, s.gpu_model, s.time_limit_s, s.mem_mb) == (2, 2, "a100", 7200, 16384)
    assert s.tenant == "vision" and s.env == {"A": "1", "B": "x=y"}
    assert s.constraints == {"driver": "560.35", "kind": "server"}
    assert spec_from_dict(spec_to_dict(s)) == s


@pytest.mark.parametrize("data,field", [
    ({"command": []}, "command"),
    ({"command": "  "}, "command"),
    ({"command": "x", "gpus": 0}, "gpus"),
    ({"command": "x", "gpus": -3}, "gpus"),
    ({"command": "x", "gpus": "many"}, "gpus"),
    ({"command": "x", "nodes": 0}, "nodes"),
    ({"command": "x", "time_limit": "soon"}, "time_limit"),
    ({"command": "x", "mem": "lots"}, "mem"),
    ({"command": "x", "tenant": "bad tenant!"}, "tenant"),
    ({"command": "x", "env": ["NOEQUALS"]}, "env"),
    ({"command": "x", "env": {"1BAD": "v"}}, "env"),
    ({"command": "x", "priority": 5000}, "priority"),
    ({"command": "x", "colour": "red"}, "colour"),
    ({"command": "x", "constraint": "novalue"}, "constraint"),
])
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        build_spec(data)
    assert e.value.field == field
