"""The embeddable chat widget (/widget.js) and a demo clinic page (/) that embeds it like a clinic would."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from bpd_rag.api.deps import SettingsDep
from bpd_rag.prompts import load_crisis_texts, load_widget_texts
from bpd_rag.types import SOURCE_TYPE_LABELS

router = APIRouter(tags=["widget"], include_in_schema=False)
texts_router = APIRouter(prefix="/api", tags=["widget"])

# Where widget.js receives its texts when it is served.
_TEXTS_PLACEHOLDER = "/*BPD_RAG_TEXTS*/null"


@cache
def widget_texts(prompts_dir: Path, locale: str) -> dict[str, Any]:
    """Every fixed text the widget shows: prompts/widget.yaml and, for crisis replies, the locale's crisis file."""
    crisis = load_crisis_texts(prompts_dir, locale).language("en")
    return {
        "ui": load_widget_texts(prompts_dir),
        "source_types": SOURCE_TYPE_LABELS,
        "crisis": {
            "heading": crisis.heading,
            "support_heading": crisis.support_heading,
            "footer": crisis.footer,
            "resources": [r.model_dump() for r in crisis.resources],
        },
    }


@texts_router.get("/widget/texts")
async def texts(settings: SettingsDep) -> dict[str, Any]:
    """The widget's fixed texts (from prompts/, reviewed like the bot's other words); /widget.js carries them too."""
    return widget_texts(settings.prompts_dir, settings.safety.locale)


@cache
def static_text(name: str) -> str:
    """A file of bpd_rag/api/static (read once)."""
    return resources.files("bpd_rag.api").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/widget.js")
async def widget_js(settings: SettingsDep) -> Response:
    """The widget: plain JavaScript, no build step; one <script> tag adds it to any page. Its texts are
    filled in here, from prompts/, so the page never shows a text the clinic has not reviewed."""
    data = json.dumps(widget_texts(settings.prompts_dir, settings.safety.locale), ensure_ascii=True)
    return Response(
        static_text("widget.js").replace(_TEXTS_PLACEHOLDER, data),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300"},  # nosniff: SecurityHeadersMiddleware, on every response
    )


@router.get("/")
async def demo_page() -> HTMLResponse:
    """A fictional clinic page with its own (clashing) CSS and the widget's script tag pointing at this server."""
    # A URL relative to the page, never one made from the Host header (which the client writes): the script
    # comes from the server that served the page, and the widget takes its API address from the script's.
    page = static_text("demo.html").replace("{{API_BASE}}", "")
    return HTMLResponse(page)
