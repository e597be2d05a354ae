"""The caller of a request: a verified user, in an org it belongs to, in one RLS transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.repository import Role, membership_role
from app.db.rls import org_transaction
from app.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="JWT with sub, org_id and exp")


@dataclass
class Caller:
    user_id: UUID
    org_id: UUID
    role: Role
    session: AsyncSession

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AsyncIterator[Caller]:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    claims = await request.app.state.token_verifier.verify(credentials.credentials)
    # The request's one transaction (an edge): committed when the endpoint returns, rolled
    # back when it raises; services join it through `caller.session`.
    async with org_transaction(request.app.state.db.engine, claims.org_id, claims.user_id) as s:
        role = await membership_role(s, claims.user_id)
        if role is None:
            raise Forbidden("The user is not a member of this organisation")
        yield Caller(user_id=claims.user_id, org_id=claims.org_id, role=role, session=s)


# scope="function": the transaction commits before the response is sent, so a client never
# sees a success whose commit then failed.
CallerDep = Annotated[Caller, Depends(_caller, scope="function")]


async def _admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise Forbidden("Only organisation admins may do this")
    return caller


AdminDep = Annotated[Caller, Depends(_admin, scope="function")]
