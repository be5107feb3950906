"""Container fields of a job spec: image references, bind mounts, pull policy (exit 2 naming the field)."""

from __future__ import annotations

import pytest

from gpufleet.domain import ValidationError
from gpufleet.domain.spec import build_spec, spec_from_dict, spec_to_dict


@pytest.mark.parametrize("ref", [
    "busybox", "localhost/gpufleet-test:latest", "nvcr.io/nvidia/pytorch:24.05-py3",
    "registry.example.com:5000/team/img:v1.2_rc", "ghcr.io/a/b/c", "my_org/my__img:TAG",
    "docker.io/library/ubuntu@sha256:" + "a" * 64, "[::1]:5000/x:1", "img:1@sha256:" + "0" * 64,
])
def test_valid_image_references_are_kept(ref):
    assert build_spec({"command": "true", "image": ref}).image == ref


@pytest.mark.parametrize("ref", [
    "UPPER/case", "img:", ":tag", "img::1", "a//b", "img@sha256:short", "with space", "-lead",
    "img:" + "t" * 200, "trailing/", "x/" + "a" * 260,
])
def test_bad_image_references_are_rejected_naming_image(ref):
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "image": ref})
    assert e.value.field == "image"


def test_mounts_are_canonical_and_round_trip():
    spec = build_spec({"command": "true", "image": "busybox", "pull": "Always",
                       "mounts": ["/data/sets//imagenet/:/data:ro", "/scratch:/scratch:rw"]})
    assert spec.mounts == ("/data/sets/imagenet:/data:ro", "/scratch:/scratch")
    assert spec.pull == "always"
    again = spec_from_dict(spec_to_dict(spec))
    assert again == spec
    assert build_spec({"command": "true", "image": "busybox"}).pull == "missing"
    assert spec_from_dict({k: v for k, v in spec_to_dict(build_spec({"command": "x"})).items()
                           if k not in ("mounts", "pull")}).pull == "missing"  # rows stored before


@pytest.mark.parametrize("mount", [
    "relative:/x", "/x:relative", "/x", "/a:/b:rx", "/a/../etc:/b", "/a:/b:ro:rw", "/a,b:/c", "/a:",
])
def test_bad_mounts_are_rejected_naming_mounts(mount):
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "image": "busybox", "mounts": [mount]})
    assert e.value.field == "mounts"


def test_two_mounts_onto_one_place_are_rejected():
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "image": "busybox", "mounts": ["/a:/x", "/b:/x/"]})
    assert e.value.field == "mounts" and "/x" in e.value.message


def test_mounts_and_pull_need_an_image_and_pull_a_known_policy():
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "mounts": ["/a:/b"]})
    assert e.value.field == "mounts"
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "pull": "always"})
    assert e.value.field == "pull"
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "true", "image": "busybox", "pull": "sometimes"})
    assert e.value.field == "pull"
