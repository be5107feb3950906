"""Folders the Slurm executor makes: the shared log folder, a job owner's private one."""

from __future__ import annotations

import os
import stat

from gpufleet.executors.accounts import Account


def shared_folder(path: str) -> None:
    """The log folder, made 1777 when this creates it (the server's umask would leave it 0700)."""
    try:
        os.makedirs(path)
    except FileExistsError:
        return
    os.chmod(path, 0o1777)


def private_folder(path: str, owner: Account) -> None:
    """`path` as a real directory of `owner`'s alone (0700): made and handed over when missing; a
    link or another's folder there is refused (ValueError), never followed."""
    try:
        os.mkdir(path, 0o700)
        os.lchown(path, owner.uid, owner.gid)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner.uid or st.st_mode & 0o077:
        raise ValueError(f"log folder {path} is not a directory of {owner.name}'s alone (mode 0700): "
                         "an admin should remove it")


def home_or(home: str, fallback: str) -> str:
    """A job run as its owner starts in the owner's home, else in the (world-writable) log folder:
    never in the server's working directory, which the owner may not be able to enter."""
    return home if home not in ("", "/") and os.path.isdir(home) else fallback
