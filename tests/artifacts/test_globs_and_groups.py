"""Artifact globs, matrix/array/dependency parsing (domain)."""

from __future__ import annotations

import pytest

from gpufleet.domain import JobState, ValidationError
from gpufleet.domain.artifact import parse_bytes
from gpufleet.domain.globs import check_globs, matches
from gpufleet.domain.group import (
    dependency_verdict, matrix_cells, parse_array, parse_dependency, parse_matrix,
)


@pytest.mark.parametrize("path,globs,want", [
    ("out/a.json", ["out/*.json"], True),
    ("out/x/a.json", ["out/*.json"], False),
    ("logs/a/b.txt", ["logs/**"], True),
    ("logs", ["logs/**"], False),
    ("a.json", ["**/*.json"], True),
    ("x/y/a.json", ["**/*.json"], True),
    ("x/y/a.jsonl", ["**/*.json"], False),
    ("f1.txt", ["f[0-9].txt"], True),
    ("fa.txt", ["f[!0-9].txt"], True),
    ("f1.txt", ["f[!0-9].txt"], False),
    ("res.xml", ["out/*", "*.xml"], True),
    ("a.b", ["a?b"], True),
    ("a/b", ["a?b"], False),
])
def test_globs_match_like_the_docs_say(path, globs, want):
    assert matches(path, globs) is want


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "out/../../x", "", ["a", "\0"]])
def test_globs_outside_the_workdir_are_refused_naming_the_field(bad):
    with pytest.raises(ValidationError) as e:
        check_globs(bad if isinstance(bad, list) else [bad])
    assert e.value.field == "artifacts"


def test_matrix_cells_are_the_product_in_order():
    axes = parse_matrix(["sku=A100-SXM4-80GB,H100-SXM5-80GB", "driver=550.54,560.35"])
    assert axes == {"sku": ["A100-SXM4-80GB", "H100-SXM5-80GB"], "driver": ["550.54", "560.35"]}
    assert matrix_cells(axes) == [
        {"sku": "A100-SXM4-80GB", "driver": "550.54"}, {"sku": "A100-SXM4-80GB", "driver": "560.35"},
        {"sku": "H100-SXM5-80GB", "driver": "550.54"}, {"sku": "H100-SXM5-80GB", "driver": "560.35"}]
    assert parse_matrix({"sku": "a,b"}) == {"sku": ["a", "b"]}


@pytest.mark.parametrize("bad", [["sku"], ["sku="], ["sku=a", "sku=b"], ["sku=a,a"], ["1x=a"], 7])
def test_bad_matrix_names_the_field(bad):
    with pytest.raises(ValidationError) as e:
        parse_matrix(bad)
    assert e.value.field == "matrix"


def test_array_syntax_of_slurm():
    assert parse_array("0-99%10") == (list(range(100)), 10)
    assert parse_array("1,3,5-7") == ([1, 3, 5, 6, 7], None)
    assert parse_array("0-20:5") == ([0, 5, 10, 15, 20], None)
    for bad in ("", "a", "5-1", "0-3%0", "0-3%x", "0-100000"):
        with pytest.raises(ValidationError) as e:
            parse_array(bad)
        assert e.value.field == "array"


def test_dependency_syntax_and_verdicts():
    assert parse_dependency("afterok:1:2,afterany:3,afternotok:4") == (
        ("afterok", 1), ("afterok", 2), ("afterany", 3), ("afternotok", 4))
    assert parse_dependency([["afterok", 5]]) == (("afterok", 5),)  # the stored form
    for bad in ("after:1", "afterok", "afterok:0", "afterok:x"):
        with pytest.raises(ValidationError):
            parse_dependency(bad)
    S = JobState
    assert dependency_verdict("afterok", S.RUNNING) is None
    assert dependency_verdict("afterok", S.SUCCEEDED) is True
    assert dependency_verdict("afterok", S.FAILED) is False
    assert dependency_verdict("afternotok", S.FAILED) is True
    assert dependency_verdict("afternotok", S.SUCCEEDED) is False
    assert dependency_verdict("afterany", S.CANCELLED) is True
    assert dependency_verdict("afterany", None) is False


def test_sizes():
    assert parse_bytes("10K", "f") == 10240 and parse_bytes("2G", "f") == 2 << 30 and parse_bytes(7, "f") == 7
    with pytest.raises(ValidationError):
        parse_bytes("lots", "f")
