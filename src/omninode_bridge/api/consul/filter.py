"""Consul's ``filter`` query parameter: the subset of its expression language we evaluate.

Supported, joined by ``and``, ``or``, ``not`` and parentheses:

- ``<selector> == <value>`` and ``!=``;
- ``<value> in <selector>`` and ``not in`` (a list such as ``Service.Tags``, or a map's keys);
- ``<selector> is empty`` and ``is not empty``.

A selector is a dotted path into the answer's entries (``Service.Meta.version``,
``Service.Tags``, ``Checks.Status``, ``ServiceMeta.version`` for the catalog);
through a list of objects (``Checks``) it yields every element's value, and
``==`` holds when any of them matches. Values are double-quoted, backquoted,
or bare words; parentheses and ``not`` nest at most ``MAX_DEPTH`` deep.
Anything else (``matches``, numbers compared as numbers, an unknown top-level
field) is a ValidationFailedError naming ``filter`` and what is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omninode_bridge.errors import ValidationFailedError

__all__ = ["MAX_DEPTH", "compile_filter"]

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) |
        (?P<op>==|!=) |
        "(?P<dq>(?:[^"\\]|\\.)*)" | `(?P<bq>[^`]*)` |
        (?P<word>[A-Za-z0-9_.:/@\-\[\]"]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "contains"}
# Parsing and evaluating recurse once per level: deeper, a filter of 4096 characters
# ran out of Python's stack (a 500) instead of being refused.
MAX_DEPTH = 64


def FilterError(message: str) -> ValidationFailedError:
    """An expression outside the supported subset, as the one validation error naming
    ``filter``; the message says what is not supported."""
    return ValidationFailedError([("filter", message.removeprefix("filter: "))])


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(
                f"filter: cannot read {text[pos : pos + 20]!r} at position {pos} "
                "(supported: ==, !=, in, not in, is empty, and, or, not, parentheses)"
            )
        pos = match.end()
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            out.append(("kw", value.lower()))
        elif kind in ("dq", "bq"):
            out.append(("str", value.replace('\\"', '"') if kind == "dq" else value))
        else:
            out.append((kind, value))
    return out


def _resolve(entry: Mapping[str, Any], path: list[str]) -> list[Any]:
    """The values at ``path`` (several when it passes through a list of objects)."""
    values: list[Any] = [entry]
    for part in path:
        found: list[Any] = []
        for value in values:
            if isinstance(value, Mapping):
                if part in value:
                    found.append(value[part])
            elif isinstance(value, list):
                found.extend(v[part] for v in value if isinstance(v, Mapping) and part in v)
        values = found
    return values


def _negated(predicate: Predicate) -> Predicate:
    return lambda e: not predicate(e)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], fields: frozenset[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.fields = fields
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("filter: the expression ends too early")
        self.pos += 1
        return token

    def expect_kw(self, word: str) -> None:
        token = self.take()
        if token != ("kw", word):
            raise FilterError(f"filter: expected {word!r}, found {token[1]!r}")

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        if self.peek() is not None:
            raise FilterError(f"filter: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def parse_or(self) -> Predicate:
        return self._chain("or", self.parse_and, any)

    def parse_and(self) -> Predicate:
        return self._chain("and", self.parse_not, all)

    def _chain(
        self,
        word: str,
        operand: Callable[[], Predicate],
        combine: Callable[[Iterable[bool]], bool],
    ) -> Predicate:
        """Operands separated by the keyword ``word``, evaluated from the left until
        ``combine`` (``any`` or ``all``) knows; one level of evaluation however many."""
        operands = [operand()]
        while self.peek() == ("kw", word):
            self.take()
            operands.append(operand())
        if len(operands) == 1:
            return operands[0]
        return lambda e: combine(p(e) for p in operands)

    def parse_not(self) -> Predicate:
        if self.peek() not in (("kw", "not"), ("lparen", "(")):
            return self.parse_match()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"filter: parentheses and 'not' nest more than {MAX_DEPTH} deep")
        if self.take() == ("kw", "not"):
            inner = _negated(self.parse_not())
        else:
            inner = self.parse_or()
            if self.take() != ("rparen", ")"):
                raise FilterError("filter: a '(' is not closed")
        self.depth -= 1
        return inner

    def selector(self, token: tuple[str, str]) -> list[str]:
        if token[0] != "word":
            raise FilterError(
                f"filter: expected a selector such as Service.Tags, found {token[1]!r}"
            )
        path = [p for p in re.split(r"\.|\[\"?|\"?\]", token[1]) if p]
        if not path or path[0] not in self.fields:
            fields = ", ".join(sorted(self.fields))
            raise FilterError(f"filter: selector {token[1]!r} is not supported (fields: {fields})")
        return path

    def parse_match(self) -> Predicate:
        first = self.take()
        nxt = self.peek()
        if nxt in (("kw", "in"), ("kw", "not")) and first[0] in ("str", "word"):
            negate = nxt == ("kw", "not")
            self.take()
            if negate:
                self.expect_kw("in")
            path = self.selector(self.take())
            needle = first[1]

            def contains(entry: Mapping[str, Any]) -> bool:
                for value in _resolve(entry, path):
                    if isinstance(value, list) and needle in [_text(v) for v in value]:
                        return True
                    if isinstance(value, Mapping) and needle in value:
                        return True
                    if isinstance(value, str) and needle in value:
                        return True
                return False

            return (lambda e: not contains(e)) if negate else contains
        path = self.selector(first)
        token = self.take()
        if token == ("kw", "is"):
            negate = self.peek() == ("kw", "not")
            if negate:
                self.take()
            self.expect_kw("empty")

            def empty(entry: Mapping[str, Any]) -> bool:
                return all(not v for v in _resolve(entry, path))

            return (lambda e: not empty(e)) if negate else empty
        if token[0] != "op":
            raise FilterError(
                f"filter: operator {token[1]!r} is not supported (use ==, !=, in, not in, is empty)"
            )
        value = self.take()
        if value[0] not in ("str", "word"):
            raise FilterError(f"filter: expected a value after {token[1]}, found {value[1]!r}")
        wanted = value[1]

        def equals(entry: Mapping[str, Any]) -> bool:
            return any(_text(v) == wanted for v in _resolve(entry, path))

        return equals if token[1] == "==" else (lambda e: not equals(e))


def compile_filter(text: str, fields: frozenset[str]) -> Predicate:
    """A predicate over answer entries whose top-level keys are ``fields``.

    Raises ValidationFailedError (naming ``filter``) outside the supported subset.
    """
    if len(text) > 4096:
        raise FilterError("filter: longer than 4096 characters")
    tokens = _tokens(text)
    if not tokens:
        raise FilterError("filter: the expression is empty")
    return _Parser(tokens, fields).parse()
