"""Moved to gpufleet.executors.accounts (the Slurm and Kubernetes engines use the same mapping);
kept so `gpufleet.executors.local.account` imports keep working."""

from gpufleet.executors.accounts import (  # noqa: F401
    BOOTSTRAP_ADMIN, DEFAULT_PATH, RUN_AS, Account, Accounts, group_gid, job_env, lookup, lookup_uid,
    this_account,
)

__all__ = ["Account", "Accounts", "BOOTSTRAP_ADMIN", "DEFAULT_PATH", "RUN_AS", "group_gid", "job_env",
           "lookup", "lookup_uid", "this_account"]
