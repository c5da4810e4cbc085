"""FastAPI dependencies as ``Annotated`` aliases: the API state, the caller and their role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipesentinel.api.auth import Principal, Role
from pipesentinel.api.context import ApiState

__all__ = ["Admin", "Officer", "State", "Viewer", "api_state", "require_role"]

_bearer = HTTPBearer(auto_error=False, description="a token minted by `pipesentinel token mint`")


def api_state(request: Request) -> ApiState:
    """The app's state (stores, services, token registry)."""
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status_code=401,
            detail="missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = api_state(request).tokens.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    request.state.principal = principal  # the audit log names who made the request
    return principal


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets through callers whose role includes ``role`` (else 403)."""

    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.role.allows(role):
            raise HTTPException(
                status_code=403,
                detail=f"role {principal.role.value} may not do this: it needs {role.value}",
            )
        return principal

    return check


Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Officer = Annotated[Principal, Depends(require_role(Role.DUTY_OFFICER))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
