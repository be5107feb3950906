"""Users and the lifecycle of their bearer tokens (a mixin of Store: it uses `self.tx()`)."""

from __future__ import annotations

import hashlib

from sqlalchemy import or_, select, update

from gpufleet.domain import ApiToken, NotFound, User
from gpufleet.store.rows import TokenRow, UserRow

TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per token: the auth path is hot


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRepo:
    def put_user(self, user: User) -> None:
        with self.tx() as s:
            s.merge(UserRow(name=user.name, tenant=user.tenant, admin=user.admin))

    # get_user(name) -> User | None lives in repo.py

    def users(self) -> list[User]:
        with self.tx() as s:
            return [User(r.name, r.tenant, r.admin) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def add_token(self, user: str, token: str, now: float, expires_at: float | None = None,
                  note: str = "") -> int:
        with self.tx() as s:
            row = TokenRow(token_hash=hash_token(token), user=user, created_at=now, expires_at=expires_at,
                           note=note)
            s.add(row)
            s.flush()
            return row.id

    def user_for_token(self, token: str, now: float | None = None) -> User | None:
        """The user of a token that is not revoked (nor expired, given `now`). No bookkeeping."""
        with self.tx() as s:
            hit = s.execute(_by_hash(token)).one_or_none()
        if hit is None or hit[1].revoked_at is not None:
            return None
        if now is not None and hit[1].expires_at is not None and now >= hit[1].expires_at:
            return None
        return User(hit[0].name, hit[0].tenant, hit[0].admin)

    def login(self, token: str, now: float) -> tuple[User, float | None] | None:
        """(user, expires_at) for a usable token, stamping last_used_at at most once a minute."""
        with self.tx() as s:
            hit = s.execute(_by_hash(token)).one_or_none()
            if hit is None:
                return None
            user, tok = hit
            if tok.revoked_at is not None or (tok.expires_at is not None and now >= tok.expires_at):
                return None
            if tok.last_used_at is None or tok.last_used_at < now - TOUCH_EVERY_S:
                s.execute(update(TokenRow).where(TokenRow.id == tok.id, or_(
                    TokenRow.last_used_at.is_(None), TokenRow.last_used_at < now - TOUCH_EVERY_S))
                    .values(last_used_at=now))
            return User(user.name, user.tenant, user.admin), tok.expires_at

    def tokens(self, user: str | None = None) -> list[ApiToken]:
        q = select(UserRow, TokenRow).join(TokenRow, TokenRow.user == UserRow.name)
        if user is not None:
            q = q.where(TokenRow.user == user)
        with self.tx() as s:
            return [_token(u, t) for u, t in s.execute(q.order_by(TokenRow.id))]

    def get_token(self, token_id: int) -> ApiToken:
        q = select(UserRow, TokenRow).join(TokenRow, TokenRow.user == UserRow.name).where(TokenRow.id == token_id)
        with self.tx() as s:
            hit = s.execute(q).one_or_none()
        if hit is None:
            raise NotFound("token", token_id)
        return _token(*hit)

    def revoke_token(self, token_id: int, now: float) -> None:
        with self.tx() as s:
            s.execute(update(TokenRow).where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                      .values(revoked_at=now))


def _by_hash(token: str):
    return (select(UserRow, TokenRow).join(TokenRow, TokenRow.user == UserRow.name)
            .where(TokenRow.token_hash == hash_token(token)))


def _token(u: UserRow, t: TokenRow) -> ApiToken:
    return ApiToken(t.id, u.name, u.tenant, u.admin, t.created_at, t.expires_at, t.last_used_at,
                    t.revoked_at, t.note or "")
