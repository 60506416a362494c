"""RegistrationCodec: a registration as about 150 bytes, for views that hold every tool.

A registration is its fields as one JSON array (orjson), deflated with a
preset dictionary: raw deflate, a 4 KiB window, and a dictionary of the last
4 KiB of sample registrations, so that what registrations share (field
values, metadata keys, URL shapes) costs nearly nothing. A realistic
registration of ~740 bytes of JSON takes ~140 bytes; without a dictionary it
would take ~320. Decoding one takes a few microseconds plus building the
model without validation (what was stored was validated on write).

A codec's dictionary never changes: what it encoded, it decodes. Compressor
and decompressor states primed with the dictionary are copied per call
(cheaper than priming a new one), and deflate runs without the GIL, so
encoding may run in a worker thread.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson

from omninode_bridge.models import ModelToolRegistration
from omninode_bridge.models.timestamps import to_utc

__all__ = ["RegistrationCodec", "Row"]

WBITS = 12  # a 4 KiB window: a registration fits in it, and so does the dictionary
MEM_LEVEL = 4  # a small hash table: inputs are short
LEVEL = 6
DICTIONARY_BYTES = 1 << WBITS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_EPOCH = to_utc(_EPOCH)  # arithmetic keeps its type: decoded times are UtcDateTime
_MICROSECOND = timedelta(microseconds=1)
# The dictionary of a codec without samples: the shape of a registration and common values.
DEFAULT_SAMPLE = (
    b'["00000000-0000-0000-0000-000000000000","tool","compute",{"operations":["read","write",'
    b'"list","search"],"formats":["json","yaml","csv"],"max_file_size":1000000,'
    b'"streaming":false,"version":"1.0.0"},{"read":"http://tool.tools.svc.cluster.local:8080/v1/'
    b'read","metrics":"http://tool:9090/metrics","mcp":"https://tool.example.com/mcp"},'
    b'{"owner":"platform","region":"us-east-1","tags":["beta","internal"],"description":"tool '
    b'maintained by the team","version":"1.0.0"},"http://tool.tools.svc.cluster.local:8080/health",'
    b"1790000000000000,1790000000000000,1790000000000000]"
)


class Row(Protocol):
    """A registration's columns by name: an asyncpg record, or a model's ``__dict__``."""

    def __getitem__(self, key: str, /) -> Any: ...


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _when(value: int | None) -> datetime | None:
    return None if value is None else _UTC_EPOCH + timedelta(microseconds=value)


def _array(row: Row) -> bytes:
    """The stored fields of ``row`` (timestamps as microseconds since the epoch)."""
    return orjson.dumps(
        [
            str(row["id"]),
            row["tool_id"],
            str(row["node_type"]),
            row["capabilities"],
            row["endpoints"],
            row["metadata"],
            row["health_endpoint"],
            _micros(row["last_heartbeat"]),
            _micros(row["registered_at"]),
            _micros(row["updated_at"]),
        ]
    )


class RegistrationCodec:
    """Encodes registrations to compact bytes and back; see the module docstring."""

    def __init__(self, sample: bytes = b"") -> None:
        dictionary = (sample or DEFAULT_SAMPLE)[-DICTIONARY_BYTES:]
        self._compressor = zlib.compressobj(
            LEVEL, zlib.DEFLATED, -WBITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
        self._decompressor = zlib.decompressobj(-WBITS, dictionary)

    @classmethod
    def trained(cls, rows: Iterable[Row]) -> RegistrationCodec:
        """A codec whose dictionary is the end of ``rows``' encodings (the default one when
        there are none): registrations like them encode smallest."""
        return cls(b"".join(_array(row) for row in rows))

    def encode(self, registration: ModelToolRegistration) -> bytes:
        return self.encode_row(registration.__dict__)

    def encode_row(self, row: Row) -> bytes:
        """Encode a database row of ``tool_registrations`` (the columns of the model)."""
        compressor = self._compressor.copy()
        return compressor.compress(_array(row)) + compressor.flush()

    def encode_rows(self, rows: Iterable[Row]) -> list[bytes]:
        """:meth:`encode_row` of each row (one call for a worker thread)."""
        return [self.encode_row(row) for row in rows]

    def decode(self, data: bytes) -> ModelToolRegistration:
        """The registration ``data`` encodes (raises ``zlib.error`` for bytes this codec did
        not make)."""
        (
            id_,
            tool_id,
            node_type,
            capabilities,
            endpoints,
            metadata,
            health_endpoint,
            last_heartbeat,
            registered_at,
            updated_at,
        ) = orjson.loads(self._decompressor.copy().decompress(data))
        return ModelToolRegistration.from_row(
            {
                "id": UUID(id_),
                "tool_id": tool_id,
                "node_type": node_type,
                "capabilities": capabilities,
                "endpoints": endpoints,
                "metadata": metadata,
                "health_endpoint": health_endpoint,
                "last_heartbeat": _when(last_heartbeat),
                "registered_at": _when(registered_at),
                "updated_at": _when(updated_at),
            }
        )
