"""Who a job runs as, and what environment it gets: shared by the engines (local, Slurm, Kubernetes).

A gpufleet user maps to a Unix account (same name unless the `accounts` setting says otherwise).
When the server runs as root and its engine declares `Ability.RUN_AS_OWNER` (`run_as_owner`),
every job runs as its owner's account: the local shim drops to its uid, gid and supplementary
groups before exec, like slurmstepd does; the Slurm engine submits with `sbatch --uid --gid`.
Otherwise every job runs as one account (the server's, or the engine's own, e.g. slurmrestd's
user) and tenants are accounting labels. Kubernetes pods take the uid/gid of the mapping when the
account exists (optional; see executors/kubernetes/manifests.py).

The environment of a job is BUILT here, never inherited from the server: defaults (HOME, USER,
LOGNAME, SHELL, PATH, LANG) < the spec's `env` < the GPU/rank variables. No GPUFLEET_HOME, no
token, nothing else of the server's environment.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass, field, replace
from typing import Collection, Mapping

from gpufleet.domain import ValidationError
from gpufleet.executors.base import Ability

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
RUN_AS = "run_as"  # the local rank directory's file that tells the shim whom to run the command as
BOOTSTRAP_ADMIN = "admin"  # services.tenants.bootstrap's user: it maps to the server's own account


@dataclass(frozen=True, slots=True)
class Account:
    """A resolved Unix account."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    def run_as_text(self, cwd_first: bool) -> bytes:
        """The shim's `run_as` file: NUL-separated K=V (the shim parses it with builtins only).
        `cwd_first`: the workdir is the executor's own (entered before dropping privileges)."""
        items = {"name": self.name, "uid": self.uid, "gid": self.gid,
                 "groups": ",".join(map(str, self.groups)), "home": self.home,
                 "cwd_first": int(cwd_first)}
        return b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in items.items())


def lookup(name: str) -> Account | None:
    """The account `name` from the password database (with its groups), None when there is none."""
    if not name or "\0" in name or "/" in name:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return _of(pw)


def lookup_uid(uid: int) -> Account | None:
    try:
        return _of(pwd.getpwuid(uid))
    except KeyError:
        return None


def _of(pw: pwd.struct_passwd) -> Account:
    try:
        groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    except OSError:
        groups = (pw.pw_gid,)
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir or "/", pw.pw_shell or "/bin/sh")


def this_account() -> Account:
    """The account this process runs as (a bare one where the password database has none)."""
    uid = os.geteuid()
    return lookup_uid(uid) or Account(str(uid), uid, os.getegid(), (os.getegid(),), "/", "/bin/sh")


def group_gid(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


@dataclass(frozen=True)
class Accounts:
    """The mapping gpufleet user <-> Unix account, and who is admin on the local socket.

    `server` is the account the server runs as; the bootstrap admin maps to it unless the mapping
    names another. `run_as_owner`: jobs run as their owner's account (the server is root and runs
    local jobs); otherwise they run as `server`. `new_user_tenant`: where an account seen first on
    the socket gets its gpufleet user (None: unknown accounts are refused)."""

    server: Account
    mapping: Mapping[str, str] = field(default_factory=dict)
    admin_group: str | None = None
    run_as_owner: bool = False
    new_user_tenant: str | None = "default"
    engine_account: str | None = None  # the one account an engine runs every job as, when not the server's

    def for_engine(self, abilities: Collection[Ability], runs_jobs_as: str | None = None) -> Accounts:
        """These accounts as the engine with `abilities` uses them: jobs run as their owners only
        when the engine declares RUN_AS_OWNER; `runs_jobs_as` is the engine's own account for all
        jobs otherwise (Slurm's REST user), for the notice."""
        owners = self.run_as_owner and Ability.RUN_AS_OWNER in abilities
        return replace(self, run_as_owner=owners, engine_account=None if owners else runs_jobs_as)

    @classmethod
    def of_this_process(cls, mapping: Mapping[str, str] | None = None, admin_group: str | None = None,
                        local_jobs: bool = True, new_user_tenant: str | None = "default") -> Accounts:
        me = this_account()
        return cls(me, dict(mapping or {}), admin_group, run_as_owner=local_jobs and me.uid == 0,
                   new_user_tenant=new_user_tenant)

    def account_name(self, user: str) -> str:
        """The Unix account name of gpufleet user `user`."""
        if user in self.mapping:
            return self.mapping[user]
        return self.server.name if user == BOOTSTRAP_ADMIN else user

    def resolve(self, user: str) -> Account:
        """The account `user`'s jobs run as. ValidationError("user") when there is none."""
        if not self.run_as_owner:
            return self.server
        name = self.account_name(user)
        acct = lookup(name)
        if acct is None:
            how = "" if user in self.mapping else " (map it to one with the server setting `accounts`)"
            raise ValidationError("user", f"user {user} has no Unix account {name!r} on this host{how}")
        return acct

    def check(self, user: str) -> None:
        """Refuse a job of `user` at submit when it could not run as its owner."""
        if self.run_as_owner:
            self.resolve(user)

    def user_of(self, account: str) -> str:
        """The gpufleet user name of Unix account `account` (the mapping's inverse; same name
        otherwise). A name the mapping or the bootstrap admin gives to another account is not
        available: '' then, so such an account never becomes that user."""
        for user, acct in self.mapping.items():
            if acct == account:
                return user
        if account == self.server.name and BOOTSTRAP_ADMIN not in self.mapping:
            return BOOTSTRAP_ADMIN
        if self.account_name(account) != account:
            return ""
        return account

    def is_admin(self, uid: int, account: Account | None) -> bool:
        """Admin on the socket: root, the server's own account, or a member of `admin_group`."""
        if uid == 0 or uid == self.server.uid:
            return True
        gid = group_gid(self.admin_group)
        return gid is not None and account is not None and gid in account.groups

    @property
    def notice(self) -> str | None:
        """What `gpufleet serve` and `gpufleet nodes` say when jobs are not isolated."""
        if self.run_as_owner:
            return None
        if self.engine_account:
            who, why = self.engine_account, "this engine runs every job as its own account"
        else:
            who = self.server.name
            why = "the server is not root" if self.server.uid != 0 else "this engine runs them as the server's account"
        return (f"every job runs as {who} ({why}); "
                "tenants are accounting labels, not a security boundary")


def job_env(account: Account, spec_env: Mapping[str, str], rank_vars: Mapping[str, str],
            lang: str | None = None) -> dict[str, str]:
    """The whole environment of one rank: defaults < spec env < GPU/rank variables."""
    env = {
        "HOME": account.home, "USER": account.name, "LOGNAME": account.name, "SHELL": account.shell,
        "PATH": DEFAULT_PATH, "LANG": lang or "C.UTF-8",
    }
    env.update({str(k): str(v) for k, v in spec_env.items()})
    env.update(rank_vars)
    return env


__all__ = ["Account", "Accounts", "DEFAULT_PATH", "RUN_AS", "group_gid", "job_env", "lookup", "lookup_uid",
           "this_account"]
