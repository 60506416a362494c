"""Opaque cursors: keyset pagination over tool_id, and change-feed positions."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import orjson

from omninode_bridge.errors import ValidationFailedError

__all__ = ["FeedPosition", "decode_page_cursor", "encode_page_cursor"]

# ASCII digits only, and nothing after (``\d`` takes any script's digits, ``$`` a final newline).
_FEED = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_TXID = 2**64 - 1  # xid8
_MAX_SEQ = 2**63 - 1  # bigint


def encode_page_cursor(last_tool_id: str) -> str:
    """The cursor of the page that follows ``last_tool_id``."""
    raw = orjson.dumps({"after": last_tool_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_cursor(cursor: str, field: str = "cursor") -> str:
    """The tool_id a page cursor points after.

    Raises ValidationFailedError naming ``field`` when the cursor is malformed.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        after = data["after"]
        if not isinstance(after, str):
            raise TypeError("after")
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise ValidationFailedError(
            [(field, "is not a cursor returned by this registry")]
        ) from None
    return after


@dataclass(frozen=True, order=True, slots=True)
class FeedPosition:
    """A change-feed position: the writing transaction's id and the event's sequence."""

    txid: int
    seq: int

    @classmethod
    def parse(cls, cursor: str | None, field: str = "since_cursor") -> FeedPosition:
        """``None`` or ``""`` is the start of the feed; anything malformed names ``field``."""
        if not cursor:
            return cls(0, 0)
        match = _FEED.fullmatch(cursor)
        if match is None:
            raise ValidationFailedError(
                [(field, "is not a change-feed cursor (expected the cursor of an event)")]
            )
        txid, seq = int(match.group(1)), int(match.group(2))
        if txid > _MAX_TXID or seq > _MAX_SEQ:
            raise ValidationFailedError(
                [(field, "is out of range (transaction id up to 2^64-1, sequence up to 2^63-1)")]
            )
        return cls(txid, seq)

    def __str__(self) -> str:
        return f"{self.txid}-{self.seq}"
