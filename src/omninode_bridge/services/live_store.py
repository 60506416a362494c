"""ToolStore: the live view's tools as one bytes object each, LiveTools made on demand.

A :class:`LiveTool` object costs ~110 bytes beside its data; a million of
them would cost more than their registrations do compactly. The store keeps
per tool one ``bytes``: a 5-byte header (health flags, the id of its
:class:`Digest` in a table of the few distinct ones), the two versions when
they are not the load's floor, then the codec's bytes of the registration. A
check's output (rare, and text) is kept apart. :meth:`get` and the iterators
rebuild LiveTools; :meth:`select` tests the digest before building anything.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from omninode_bridge.services.live_tool import Digest, LiveTool
from omninode_bridge.services.registration_codec import RegistrationCodec

__all__ = ["ToolStore"]

_HEADER = struct.Struct("<BI")  # flags, digest id
_VERSIONS = struct.Struct("<qq")  # version, created_version
HEARTBEAT_OK = 1
CHECK_PASSING = 2
CHECK_CRITICAL = 4
VERSIONED = 8  # the versions follow the header (else both are the floor)
_CHECKS = {None: 0, "passing": CHECK_PASSING, "critical": CHECK_CRITICAL}


class ToolStore:
    """Tools by tool_id, packed; versions equal to ``floor`` cost nothing."""

    def __init__(self, codec: RegistrationCodec, floor: int) -> None:
        self.codec = codec
        self.floor = floor
        self._records: dict[str, bytes] = {}
        self._outputs: dict[str, str] = {}  # non-empty check outputs
        self._digests: list[Digest | None] = []
        self._digest_ids: dict[Digest, int] = {}
        self._uses: list[int] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._records)

    # -- digests: a table of the distinct ones, each counted while a tool uses it -------

    def _hold(self, digest: Digest) -> int:
        found = self._digest_ids.get(digest)
        if found is None:
            found = self._free.pop() if self._free else len(self._digests)
            if found == len(self._digests):
                self._digests.append(digest)
                self._uses.append(0)
            else:
                self._digests[found] = digest
            self._digest_ids[digest] = found
        self._uses[found] += 1
        return found

    def _release(self, digest_id: int) -> None:
        self._uses[digest_id] -= 1
        if not self._uses[digest_id]:
            digest = self._digests[digest_id]
            assert digest is not None
            del self._digest_ids[digest]
            self._digests[digest_id] = None
            self._free.append(digest_id)

    # -- tools --------------------------------------------------------------------------

    def put(self, tool: LiveTool) -> None:
        """Store ``tool`` (its ``data`` must be this store's codec's), replacing any."""
        old = self._records.get(tool.tool_id)
        flags = (HEARTBEAT_OK if tool.heartbeat_ok else 0) | _CHECKS[tool.check_status]
        versions = b""
        if tool.version != self.floor or tool.created_version != self.floor:
            flags |= VERSIONED
            versions = _VERSIONS.pack(tool.version, tool.created_version)
        header = _HEADER.pack(flags, self._hold(tool.digest))
        self._records[tool.tool_id] = header + versions + tool.data
        if old is not None:
            self._release(_HEADER.unpack_from(old)[1])
        if tool.check_output:
            self._outputs[tool.tool_id] = tool.check_output
        else:
            self._outputs.pop(tool.tool_id, None)

    def pop(self, tool_id: str) -> None:
        old = self._records.pop(tool_id, None)
        if old is not None:
            self._release(_HEADER.unpack_from(old)[1])
            self._outputs.pop(tool_id, None)

    def _tool(self, tool_id: str, record: bytes) -> LiveTool:
        flags, digest_id = _HEADER.unpack_from(record)
        start = _HEADER.size
        version = created = self.floor
        if flags & VERSIONED:
            version, created = _VERSIONS.unpack_from(record, start)
            start += _VERSIONS.size
        digest = self._digests[digest_id]
        assert digest is not None
        check = (
            "critical" if flags & CHECK_CRITICAL else "passing" if flags & CHECK_PASSING else None
        )
        return LiveTool(
            tool_id,
            digest,
            record[start:],
            self.codec,
            heartbeat_ok=bool(flags & HEARTBEAT_OK),
            check_status=check,
            check_output=self._outputs.get(tool_id, ""),
            version=version,
            created_version=created,
        )

    def get(self, tool_id: str) -> LiveTool | None:
        record = self._records.get(tool_id)
        return None if record is None else self._tool(tool_id, record)

    def __iter__(self) -> Iterator[LiveTool]:
        return (self._tool(t, r) for t, r in self._records.items())

    def select(self, wanted: Callable[[Digest], bool]) -> Iterator[LiveTool]:
        """The tools whose digest is ``wanted``; the others are not even unpacked."""
        ids = {i for i, d in enumerate(self._digests) if d is not None and wanted(d)}
        unpack = _HEADER.unpack_from
        return (self._tool(t, r) for t, r in self._records.items() if unpack(r)[1] in ids)
