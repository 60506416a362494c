"""Endpoints in compact form: most tools' URLs follow one pattern shared by many tools.

A tool usually serves operation ``op`` at ``<head><tool_id><tail><op>`` (its
own host, then one path prefix) or at ``<head><op>`` (one base URL). Such a
tool's endpoints are one shared :class:`Template` (interned: a million tools
with the same pattern hold one object); any other tool keeps its URLs as a
tuple of strings, one per routed operation, in the order of ``routed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["Endpoints", "Template", "TemplateTable", "endpoint_of"]


class Template:
    """``url = head + tool_id + tail + op`` (``with_id``) or ``head + op``."""

    __slots__ = ("head", "tail", "with_id")

    def __init__(self, head: str, tail: str, with_id: bool) -> None:
        self.head: Final = head
        self.tail: Final = tail
        self.with_id: Final = with_id

    def url(self, tool_id: str, operation: str) -> str:
        if self.with_id:
            return f"{self.head}{tool_id}{self.tail}{operation}"
        return f"{self.head}{operation}"


Endpoints = Template | tuple[str, ...]


def endpoint_of(
    endpoints: Endpoints, tool_id: str, routed: tuple[str, ...], operation: str
) -> str | None:
    """The URL for ``operation``; ``None`` when it is not one of ``routed``."""
    if operation not in routed:
        return None
    if isinstance(endpoints, Template):
        return endpoints.url(tool_id, operation)
    return endpoints[routed.index(operation)]


class TemplateTable:
    """Turns a tool's endpoint mapping into :data:`Endpoints`, sharing equal templates.

    The table keeps every distinct template it made (few: one per URL
    pattern, not per tool).
    """

    __slots__ = ("_last", "_templates")

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str, bool], Template] = {}
        self._last: Template | None = None  # tried first: tools come in runs of one pattern

    def __len__(self) -> int:
        return len(self._templates)

    def encode(
        self, tool_id: str, routed: tuple[str, ...], urls: Mapping[str, object]
    ) -> Endpoints:
        """``urls[op]`` for each of ``routed`` (each a non-empty string) in compact form."""
        if not routed:
            return ()
        last = self._last
        if last is not None and all(urls[op] == last.url(tool_id, op) for op in routed):
            return last
        key = _pattern(tool_id, routed[0], str(urls[routed[0]]))
        if key is not None:
            template = self._templates.get(key)
            if template is None:
                template = Template(*key)
            if all(urls[op] == template.url(tool_id, op) for op in routed[1:]):
                self._templates[key] = self._last = template
                return template
        return tuple(str(urls[op]) for op in routed)


def _pattern(tool_id: str, operation: str, url: str) -> tuple[str, str, bool] | None:
    if not url.endswith(operation):
        return None
    stem = url[: len(url) - len(operation)]
    at = stem.find(tool_id) if tool_id else -1
    if at >= 0:
        return stem[:at], stem[at + len(tool_id) :], True
    return stem, "", False
