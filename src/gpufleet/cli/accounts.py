"""token create/list/revoke, user set/list."""

from __future__ import annotations

import time
from typing import Optional

import typer

from gpufleet.cli.output import ago, print_json, table, when
from gpufleet.client import Client

token_app = typer.Typer(help="API tokens: create (admin), list and revoke (admin: any; users: their own).",
                        no_args_is_help=True)
user_app = typer.Typer(help="Users: list; move to another tenant, grant or take admin (admin).",
                       no_args_is_help=True)


@token_app.command("create")
def token_create(user: str = typer.Option(..., "--user"),
                 tenant: Optional[str] = typer.Option(None, "--tenant", help="needed for a new user"),
                 admin: Optional[bool] = typer.Option(None, "--admin/--no-admin", help="for a new user"),
                 expires: Optional[str] = typer.Option(None, "--expires", help="e.g. 30d, 12h (default: never)"),
                 note: str = typer.Option("", "--note", help="what the token is for"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a fresh token for USER (made in TENANT if new). An existing user's tenant and admin
    flag are not changed here: `gpufleet user set` does that."""
    with Client.from_env() as c:
        t = c.create_token(user, tenant, admin, expires, note)
    if as_json:
        print_json(t)
    else:
        print(t.token)


@token_app.command("list")
def token_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Tokens (never their secrets): admin sees all, a user their own."""
    with Client.from_env() as c:
        rows = c.tokens()
    if as_json:
        print_json(rows)
        return
    now = time.time()
    table(("ID", "USER", "TENANT", "ADMIN", "CREATED", "EXPIRES", "LAST USED", "REVOKED", "NOTE"), [
        (t.id, t.user, t.tenant, "yes" if t.admin else "", when(t.created_at),
         when(t.expires_at) if t.expires_at else "never",
         f"{ago(t.last_used_at, now)} ago" if t.last_used_at else "never",
         when(t.revoked_at) if t.revoked_at else "", t.note)
        for t in rows
    ])


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="the ID shown by `gpufleet token list`")) -> None:
    """Revoke a token: it stops working at once (admin: any token; a user: their own)."""
    with Client.from_env() as c:
        t = c.revoke_token(token_id)
    print(f"token {t.id} of {t.user} revoked")


@user_app.command("set")
def user_set(name: str,
             tenant: Optional[str] = typer.Option(None, "--tenant", help="move the user to this tenant"),
             admin: Optional[bool] = typer.Option(None, "--admin/--no-admin", help="grant or take admin")) -> None:
    """Change a user's tenant or admin flag (admin only, audited)."""
    with Client.from_env() as c:
        u = c.set_user(name, tenant, admin)
    print(f"{u.name} tenant={u.tenant} admin={'yes' if u.admin else 'no'}")


@user_app.command("list")
def user_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Users with their tenant and admin flag (a user sees only themself)."""
    with Client.from_env() as c:
        rows = c.users()
    if as_json:
        print_json(rows)
        return
    table(("USER", "TENANT", "ADMIN"), [(u.name, u.tenant, "yes" if u.admin else "") for u in rows])
