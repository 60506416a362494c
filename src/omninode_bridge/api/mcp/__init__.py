"""The MCP face: an MCP server at ``/mcp`` and the MCP registry's ``/v0.1`` read API."""

from __future__ import annotations

from omninode_bridge.api.mcp.face import McpFace

__all__ = ["McpFace"]
