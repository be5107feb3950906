"""Finding the artifact files of a rank's workdir (any engine whose workdirs the server can read):
globs over the directory, without following a symbolic link (the workdir is the job's: it could
plant a link to a file it cannot read itself, like the results directory; see
executors/logfile.py). Only regular files count."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator, Sequence

from gpufleet.domain.globs import matches
from gpufleet.executors.base import ArtifactFile

MAX_FILES = 1000  # per attempt
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def find_artifacts(workdir: Path, globs: Sequence[str], rank: int, notes: list[str],
                   budget: list[int]) -> Iterator[ArtifactFile]:
    """Matching files under `workdir`, sorted per folder, each opened as it is yielded (the
    consumer closes it). `budget`: [files still allowed this attempt], shared across ranks."""
    if not globs:
        return
    for top, dirs, files, dir_fd in os.fwalk(workdir, follow_symlinks=False):
        dirs.sort()
        rel_dir = os.path.relpath(top, workdir)
        for name in sorted(files):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if not matches(rel, globs):
                continue
            if budget[0] <= 0:
                notes.append(f"rank {rank}: more than {MAX_FILES} artifacts: {rel} and the rest not collected")
                return
            try:
                fd = os.open(name, _OPEN, dir_fd=dir_fd)
            except OSError:
                notes.append(f"rank {rank}: {rel} is a symbolic link or unreadable: not collected")
                continue
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                notes.append(f"rank {rank}: {rel} is not a regular file: not collected")
                continue
            os.set_blocking(fd, True)
            budget[0] -= 1
            yield ArtifactFile(rank=rank, path=rel, size=st.st_size, file=os.fdopen(fd, "rb"))
