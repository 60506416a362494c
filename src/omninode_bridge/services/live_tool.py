"""LiveTool: one tool of the live view, its registration compact; Digest: what it is grouped by.

A tool holds its registration as the bytes of a :class:`RegistrationCodec`
and decodes it on demand; its :class:`Digest` (node type, tags, which noted
endpoints it declares) lets whole-view answers pick the few tools they need
without decoding the rest.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.services.registration_codec import RegistrationCodec

__all__ = ["DEFAULT_CODEC", "NOTED_ENDPOINTS", "Digest", "LiveTool", "digest_of"]

# Endpoints whole-view answers select tools by: Prometheus SD (metrics), MCP servers.
NOTED_ENDPOINTS = ("metrics", "mcp", "mcp-sse")
DEFAULT_CODEC = RegistrationCodec()


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Digest:
    """What whole-view answers group and filter a tool by, without decoding it.

    ``tags``: ``metadata.tags`` when it is a list of strings, else empty;
    ``endpoints``: which of :data:`NOTED_ENDPOINTS` the tool declares (whatever
    their URL). Equal digests are one object: a million tools share a few.
    """

    node_type: NodeType
    tags: tuple[str, ...]
    endpoints: frozenset[str]

    @classmethod
    def of(cls, registration: ModelToolRegistration) -> Digest:
        extra = registration.metadata.get("tags")
        tags = (
            tuple(extra)
            if isinstance(extra, list) and all(isinstance(t, str) for t in extra)
            else ()
        )
        noted = frozenset(e for e in NOTED_ENDPOINTS if e in registration.endpoints)
        return cls(registration.node_type, tags, noted)


_DIGESTS: weakref.WeakValueDictionary[Digest, Digest] = weakref.WeakValueDictionary()


def digest_of(registration: ModelToolRegistration) -> Digest:
    """:meth:`Digest.of`, interned: equal digests are one object."""
    digest = Digest.of(registration)
    return _DIGESTS.setdefault(digest, digest)


@dataclass(frozen=True, slots=True)
class LiveTool:
    """A registration, compactly, and its health as the feed last said.

    ``heartbeat_ok``: within the TTL at the last sweep; ``check_status``:
    ``passing``/``critical`` once active checks have decided, else ``None``.
    ``data`` is the registration as ``codec`` encoded it: :attr:`registration`
    decodes it on every access (a few microseconds), so read it once per answer.
    """

    tool_id: str
    digest: Digest
    data: bytes
    codec: RegistrationCodec = DEFAULT_CODEC
    heartbeat_ok: bool = True
    check_status: str | None = None
    check_output: str = ""
    version: int = 1  # txid of the tool's last event
    created_version: int = 1

    @classmethod
    def of(
        cls,
        registration: ModelToolRegistration,
        codec: RegistrationCodec = DEFAULT_CODEC,
        **health: Any,
    ) -> LiveTool:
        """``registration`` encoded; ``health``: the other fields (``heartbeat_ok``...)."""
        return cls(
            registration.tool_id,
            digest_of(registration),
            codec.encode(registration),
            codec,
            **health,
        )

    @property
    def registration(self) -> ModelToolRegistration:
        return self.codec.decode(self.data)

    @property
    def health(self) -> str:
        """``critical`` (failing checks), ``stale`` (heartbeat past the TTL) or ``healthy``."""
        if self.check_status == "critical":
            return "critical"
        return "healthy" if self.heartbeat_ok else "stale"
