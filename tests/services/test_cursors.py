"""Cursors as clients send them back: feed positions and page cursors, well-formed or not."""

from __future__ import annotations

import pytest

from omninode_bridge.errors import ValidationFailedError
from omninode_bridge.services.cursors import FeedPosition, decode_page_cursor, encode_page_cursor


def test_a_feed_position_reads_back_what_it_wrote() -> None:
    position = FeedPosition.parse("734-12")
    assert position == FeedPosition(734, 12) and str(position) == "734-12"
    assert FeedPosition.parse(None) == FeedPosition.parse("") == FeedPosition(0, 0)


@pytest.mark.parametrize(
    "cursor",
    [
        "1-1\n",  # what "$" lets through
        "\uff11-\uff11",  # fullwidth digits: int() reads them, "\d" matches them
        "\u0661-1",  # Arabic-Indic
        "1-\U0001d7cf",  # mathematical bold
        " 1-1",
        "1-1-1",
        "-1-1",
        "1-",
        "0x1-1",
        "18446744073709551616-0",  # past xid8
        "1-9223372036854775808",  # past bigint
    ],
)
def test_a_malformed_feed_position_names_its_field(cursor: str) -> None:
    with pytest.raises(ValidationFailedError) as info:
        FeedPosition.parse(cursor, field="since")
    assert info.value.errors[0][0] == "since"


def test_a_page_cursor_reads_back_and_a_tampered_one_is_refused() -> None:
    assert decode_page_cursor(encode_page_cursor("tool:1@a")) == "tool:1@a"
    for tampered in ("%%%", "bnVsbA", "WzFd", "eyJhZnRlciI6MX0", "eyJ4IjoxfQ"):
        with pytest.raises(ValidationFailedError):
            decode_page_cursor(tampered)
