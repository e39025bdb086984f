"""GET /healthz (the process answers) and /readyz (database, queue and schema are ready)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aitasks.api.deps import ServicesDep
from aitasks.store.migrate import schema_state

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: `checks` names what is not (same shape)."}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        state = await schema_state(services.db)
        checks["database"] = "ok"
        checks["schema"] = "ok" if state.up_to_date else f"at {state.current}, need {state.head}"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await services.queue.ping()
        checks["queue"] = "ok"
    except Exception as exc:
        checks["queue"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
