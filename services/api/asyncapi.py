"""``/asyncapi.json``: the AsyncAPI 3.0 document of every event the system carries, beside the
HTTP API's own ``/openapi.json``, and public like it (``shared.asyncapi``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.asyncapi import asyncapi_document

ASYNCAPI_PATH = "/asyncapi.json"

router = APIRouter()


@cache
def _document() -> dict[str, Any]:
    # Built once per process: it only changes with the code.
    return asyncapi_document()


@router.get(ASYNCAPI_PATH, include_in_schema=False)
async def asyncapi() -> JSONResponse:
    return JSONResponse(_document())
