"""OpenAPI docs at /docs with Swagger UI served from the swagger-ui-py package, not a CDN (no internet here)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}


def _asset_dir() -> Path:
    # swagger-ui-py ships Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes (4.x cannot).
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Interactive API docs that work offline."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="bpd-rag API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


@router.get("/docs-assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    """One of the few Swagger UI files the docs page needs."""
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"No docs asset {name!r}.")
    return FileResponse(_asset_dir() / name, headers={"Cache-Control": "public, max-age=86400"})
