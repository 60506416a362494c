"""The registry's HTTP API (FastAPI): ``create_app(settings)``."""

from __future__ import annotations

from omninode_bridge.api.app import create_app

__all__ = ["create_app"]
