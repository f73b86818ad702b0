"""GET /v1/health: whether the server runs, its model and devices, the queue; no token needed."""

from fastapi import APIRouter

from ..dependencies import Executor, Settings, Table
from ..schema import API_VERSION, Health, errors

router = APIRouter()


@router.get("/v1/health", response_model=Health, responses=errors(403))
def health(settings: Settings, table: Table, executor: Executor) -> dict:
    return {
        "status": "ok",
        "model": settings.model_name,
        "devices": executor.devices,
        "queue": table.queued,
        "loaded": executor.loaded(),
        "api": API_VERSION,
    }
