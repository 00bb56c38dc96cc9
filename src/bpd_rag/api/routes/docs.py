"""OpenAPI docs at /docs with Swagger UI served from the swagger-ui-py package, not a CDN (no internet here).

The page runs no inline script (its Content-Security-Policy allows scripts from this server only): Swagger UI
is started by /docs-assets/swagger-init.js.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bpd-rag API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css">
<link rel="icon" href="/docs-assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/docs-assets/swagger-init.js"></script>
</body>
</html>
"""

# FastAPI's default Swagger UI settings; validatorUrl null: the validator badge is an image from swagger.io.
SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def _asset_dir() -> Path:
    # swagger-ui-py ships Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes (4.x cannot).
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Interactive API docs that work offline."""
    return HTMLResponse(DOCS_PAGE)


@router.get("/docs-assets/swagger-init.js")
async def swagger_init() -> Response:
    """The script that starts Swagger UI on the docs page."""
    return Response(
        SWAGGER_INIT, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/docs-assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    """One of the few Swagger UI files the docs page needs."""
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"No docs asset {name!r}.")
    return FileResponse(_asset_dir() / name, headers={"Cache-Control": "public, max-age=86400"})
