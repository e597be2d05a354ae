from __future__ import annotations

from fastapi import APIRouter, Request

from app.errors import database_unavailable_error

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers",
    responses={503: {"description": "The database is unreachable"}},
)
async def readyz(request: Request) -> dict[str, str]:
    try:
        await request.app.state.db.ping()
    except Exception:
        raise database_unavailable_error() from None
    return {"status": "ready"}
