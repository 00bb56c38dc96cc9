"""The embeddable chat widget (/widget.js) and a demo clinic page (/) that embeds it like a clinic would."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["widget"], include_in_schema=False)


@cache
def static_text(name: str) -> str:
    """A file of bpd_rag/api/static (read once)."""
    return resources.files("bpd_rag.api").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/widget.js")
async def widget_js() -> Response:
    """The widget: plain JavaScript, no build step; one <script> tag adds it to any page."""
    return Response(
        static_text("widget.js"),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/")
async def demo_page(request: Request) -> HTMLResponse:
    """A fictional clinic page with its own (clashing) CSS and the widget's script tag pointing at this server."""
    base = html.escape(str(request.base_url).rstrip("/"), quote=True)
    page = static_text("demo.html").replace("{{API_BASE}}", base)
    return HTMLResponse(page)
