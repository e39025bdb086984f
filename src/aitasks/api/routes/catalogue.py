"""GET /v1/models: the model table."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from aitasks.api.auth import authenticate
from aitasks.api.deps import ServicesDep
from aitasks.api.responses import errors
from aitasks.api.schemas import ModelList, ModelView, PatternView

router = APIRouter(
    prefix="/v1", tags=["models"], dependencies=[Depends(authenticate)], responses=errors()
)


@router.get("/models", response_model=ModelList)
async def list_models(services: ServicesDep) -> ModelList:
    """Every configured model in the table's order, and the rules that route names not in it."""
    table = services.models
    return ModelList(
        data=[
            ModelView(
                id=m.name,
                kind=m.kind,
                queue=m.queue,
                provider=m.provider,
                served_by=m.served_by,
                context_window=m.context_window,
                supports=list(m.features),
            )
            # In the table's order (the built-in table, then the operator's additions), so that
            # what the operator puts first is what a client offers first (the web page's picker).
            for m in table.models.values()
        ],
        patterns=[
            PatternView(
                prefix=p.prefix,
                contains=list(p.contains),
                kind=p.template.kind,
                queue=p.template.queue,
                provider=p.template.provider,
                served_by=p.template.served_by,
                supports=list(p.template.features),
            )
            for p in table.patterns
        ],
    )
