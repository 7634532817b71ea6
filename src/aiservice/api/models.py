"""GET /v1/models and /v1/models/{id}: every name a client may ask for."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from openai.types import Model

from aiservice.api.deps import authenticate, registry
from aiservice.providers.registry import ModelRegistry, ServedEmbeddingModel, ServedModel

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(authenticate)])


def _wire(model: ServedModel | ServedEmbeddingModel) -> dict[str, object]:
    return Model(
        id=model.name, object="model", created=model.created, owned_by="aiservice"
    ).model_dump(mode="json", exclude_unset=True)


@router.get("/models")
async def list_models(models: ModelRegistry = Depends(registry)) -> dict[str, object]:
    return {"object": "list", "data": [_wire(m) for m in models.served_models()]}


@router.get("/models/{model_id:path}")
async def retrieve_model(
    model_id: str, models: ModelRegistry = Depends(registry)
) -> dict[str, object]:
    return _wire(models.lookup(model_id))
