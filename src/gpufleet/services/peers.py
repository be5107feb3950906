"""Who is calling on the local Unix socket: the kernel says which uid (SO_PEERCRED), this says
which gpufleet user that is. Like munge or the Docker socket, the socket needs no token file.

- root, the server's own account and members of the `admin_group` setting are admins;
- any other account is the gpufleet user it maps to (the `accounts` setting, inverted; the same
  name otherwise), never more than that user's own rights;
- an account not seen before gets its user on first use, a non-admin in the tenant of the
  `peer_tenant` setting (`default`), audited; with `peer_tenant: null` it is refused until an
  admin creates the user (`gpufleet token create --user NAME --tenant T`);
- a name the mapping gives to another account (or `admin`) is never lent to an account that only
  shares it: such a peer is refused.
"""

from __future__ import annotations

from gpufleet.domain import Forbidden, User
from gpufleet.executors.local.account import Accounts, lookup_uid
from gpufleet.services.context import Ctx


def user_for_peer(ctx: Ctx, uid: int) -> User:
    """The gpufleet user of the process with `uid` on the other end of the socket."""
    accounts = ctx.accounts or Accounts.of_this_process(local_jobs=False)
    account = lookup_uid(uid)
    if account is None:
        raise Forbidden(f"uid {uid} has no account on this host")
    admin = accounts.is_admin(uid, account)
    name = accounts.user_of(account.name)
    if not name:
        raise Forbidden(f"account {account.name} maps to no gpufleet user (its name belongs to another "
                        "account); ask an admin to map it with the server setting `accounts`")
    user = ctx.store.get_user(name)
    if user is None:
        user = _first_use(ctx, accounts, name, account.name, admin)
    return User(user.name, user.tenant, user.admin or admin)


def _first_use(ctx: Ctx, accounts: Accounts, name: str, account: str, admin: bool) -> User:
    tenant = accounts.new_user_tenant
    if tenant is None or tenant not in ctx.tenant_names():
        raise Forbidden(f"account {account} has no gpufleet user yet; ask an admin "
                        f"(gpufleet token create --user {name} --tenant TENANT)")
    user = User(name, tenant, admin=False)  # the admin right of a peer is never stored
    ctx.store.put_user(user)
    ctx.audit(user, "user-create", f"user/{name}", tenant=tenant, via="socket", account=account)
    return user
