"""The local engine's artifact finder: globs over the workdir, regular files only, no link
followed (a job could plant one to a file it cannot read itself), a cap per attempt."""

from __future__ import annotations

import os

from gpufleet.executors.artifact_files import find_artifacts


def collect(workdir, globs, budget=None):
    notes: list[str] = []
    got = {}
    for f in find_artifacts(workdir, globs, 0, notes, budget or [1000]):
        with f.file:
            got[f.path] = f.file.read()
            assert f.size == len(got[f.path])
    return got, notes


def test_finds_matching_regular_files_and_follows_no_link(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    work = tmp_path / "work"
    (work / "out" / "deep").mkdir(parents=True)
    (work / "out" / "a.json").write_text("a")
    (work / "out" / "deep" / "b.json").write_text("b")
    (work / "out" / "c.txt").write_text("c")
    (work / "out" / "link.json").symlink_to(secret)
    (work / "linkdir").symlink_to(tmp_path)
    os.mkfifo(work / "out" / "fifo.json")
    got, notes = collect(work, ["out/*.json", "linkdir/**"])
    assert got == {"out/a.json": b"a"}
    assert any("link.json is a symbolic link" in n for n in notes)
    assert any("fifo.json" in n for n in notes)
    got, _ = collect(work, ["**/*.json"])
    assert set(got) == {"out/a.json", "out/deep/b.json"}


def test_a_workdir_that_is_a_link_yields_nothing(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.json").write_text("a")
    (tmp_path / "work").symlink_to(tmp_path / "real")
    assert collect(tmp_path / "work", ["*.json"])[0] == {}


def test_cap_on_files_per_attempt(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.log").write_text(str(i))
    got, notes = collect(tmp_path, ["*.log"], budget=[3])
    assert len(got) == 3 and any("more than" in n for n in notes)
