"""The HTTP API and the embeddable chat widget: create_app(settings)."""

from bpd_rag.api.app import create_app

__all__ = ["create_app"]
