"""The files a rank left in its results directory ($GPUFLEET_RESULTS_DIR = rank-<r>/results/),
read without following a link: the directory is the job's own, so it could plant a link to a file
it cannot read itself (see executors/logfile.py). Only regular files directly inside it count."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from gpufleet.executors.base import ResultFile
from gpufleet.executors.logfile import UnsafeLog, _DIR, _FILE, _NOFOLLOW, _step

RESULTS = "results"
SUFFIXES = (".jsonl", ".json", ".ndjson", ".xml")
MAX_FILE = 64 << 20  # bytes per file, and per attempt in all
MAX_FILES = 100


def make_results_dir(rank_dir: Path, uid: int | None, gid: int | None) -> Path:
    """rank-<r>/results/: 0700, the job's account's (like work/)."""
    d = rank_dir / RESULTS
    d.mkdir(mode=0o700, exist_ok=True)
    if uid is not None and gid is not None:
        os.lchown(d, uid, gid)
    return d


def read_results(base: Path, parts: Sequence[str], rank: int) -> tuple[list[ResultFile], list[str]]:
    """(the files, notes about what was skipped) of base/parts/results/."""
    try:
        fd = os.open(base, _DIR)
        for name in (*parts, RESULTS):
            fd = _step(fd, name, _DIR | _NOFOLLOW)
    except FileNotFoundError:
        return [], []
    except UnsafeLog:
        return [], [f"rank {rank}: the results directory is a symbolic link: not read"]
    try:
        return _read_dir(fd, rank)
    finally:
        os.close(fd)


def _read_dir(dir_fd: int, rank: int) -> tuple[list[ResultFile], list[str]]:
    files, notes, total = [], [], 0
    for name in sorted(os.listdir(dir_fd))[:MAX_FILES]:
        if not name.endswith(SUFFIXES):
            continue
        try:
            fd = os.open(name, _FILE, dir_fd=dir_fd)
        except OSError:
            notes.append(f"rank {rank}: {name} is a symbolic link or unreadable: not read")
            continue
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                notes.append(f"rank {rank}: {name} is not a regular file: not read")
                continue
            if st.st_size > MAX_FILE or total + st.st_size > MAX_FILE:
                notes.append(f"rank {rank}: {name} is over {MAX_FILE >> 20} MiB: not read")
                continue
            total += st.st_size
            files.append(ResultFile(rank=rank, name=name, data=f.read(MAX_FILE)))
    return files, notes
