"""Showing text that anybody may have written (registrations, etcd keys) to a person.

:func:`visible` escapes the characters that would act on a terminal or a log rather
than show: C0 and C1 controls (an ESC that clears the screen, a newline that starts
a forged log line) and the bidirectional and other invisible formatting characters
(a right-to-left override that reorders what follows). Each becomes a ``\\u001b``-style
escape. The web console's ``visible()`` (``console.js``) escapes the set of
``visible(text, lines=True)``.
"""

from __future__ import annotations

import re

__all__ = ["visible"]

_C1_AND_FORMATTING = r"\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_UNPRINTABLE = re.compile(rf"[\x00-\x1f{_C1_AND_FORMATTING}]")
_UNPRINTABLE_BUT_LINES = re.compile(rf"[\x00-\x08\x0b-\x1f{_C1_AND_FORMATTING}]")  # keeps \t and \n


def visible(text: str, *, lines: bool = False) -> str:
    """``text`` with those characters escaped; ``lines``: tab and newline kept as they
    are (a message of several lines for a terminal; never for a log line)."""
    pattern = _UNPRINTABLE_BUT_LINES if lines else _UNPRINTABLE
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
