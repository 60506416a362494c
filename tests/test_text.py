"""``text.visible``: what acts on a terminal or a log shows as an escape instead."""

from __future__ import annotations

from omninode_bridge.text import visible


def test_controls_and_formatting_show_as_escapes() -> None:
    hostile = "a\x1b[2Jb\u202ec\x00d\x85e\u2066f\ufeff"
    assert visible(hostile) == "a\\u001b[2Jb\\u202ec\\u0000d\\u0085e\\u2066f\\ufeff"


def test_a_log_line_cannot_be_split_but_a_message_keeps_its_lines() -> None:
    text = "one\ttwo\nthree\r"
    assert visible(text) == "one\\u0009two\\u000athree\\u000d"
    assert visible(text, lines=True) == "one\ttwo\nthree\\u000d"


def test_ordinary_text_is_unchanged() -> None:
    text = "tool-é 工具 emoji 🙂 [red] ascii"
    assert visible(text) == visible(text, lines=True) == text
