"""Named SQL queries, read from the ``.sql`` files beside this module.

A file holds blocks that start with ``-- name: <query_name>``; the text up to
the next such line is the query. Values are always bind parameters.

A piece of SQL that several queries share is written once in
``fragments.sql``, as a block that starts with ``-- fragment: <name>(<param>,
...)`` and names its parameters ``{param}`` in its text. A query includes it
with ``{{ <name>(<arg>, ...) }}``, where each argument (a bind parameter such
as ``$2``, usually) replaces its parameter. Fragments are expanded when the
file is loaded, so the database sees plain SQL; an unknown fragment or a wrong
number of arguments is an error at load time. A fragment may include others.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from importlib import resources

__all__ = ["load_queries"]

_HEADER = re.compile(
    r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)(?:\(([a-z_, ]*)\))?\s*$", re.MULTILINE
)
_USE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\(([^()]*)\)\s*\}\}")
FRAGMENTS_FILE = "fragments.sql"
MAX_DEPTH = 4


def _blocks(filename: str) -> Iterator[tuple[str, str, str | None, str]]:
    """(kind, name, parameters as written or ``None``, text) of each block of ``filename``."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    headers = list(_HEADER.finditer(text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        yield header.group(1), header.group(2), header.group(3), text[header.end() : end].strip()


@functools.cache
def _fragments() -> dict[str, tuple[tuple[str, ...], str]]:
    """The shared fragments: name -> (parameter names, text)."""
    fragments: dict[str, tuple[tuple[str, ...], str]] = {}
    for kind, name, params, text in _blocks(FRAGMENTS_FILE):
        if kind != "fragment" or params is None:
            raise ValueError(f"{FRAGMENTS_FILE}: {name!r} is not a '-- fragment: name(params)'")
        if name in fragments:
            raise ValueError(f"{FRAGMENTS_FILE}: fragment {name!r} is defined twice")
        lines = text.splitlines()
        while lines and lines[0].lstrip().startswith("--"):  # its description stays here
            lines.pop(0)
        body = "\n".join(lines)
        fragments[name] = (tuple(p.strip() for p in params.split(",") if p.strip()), body)
    return fragments


def _expand(text: str, where: str, depth: int = 0) -> str:
    """``text`` with every ``{{ fragment(args) }}`` replaced by the fragment's SQL
    (fragments may include fragments, a few levels deep)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: fragments nested more than {MAX_DEPTH} deep (a cycle?)")

    def include(use: re.Match[str]) -> str:
        name = use.group(1)
        args = [arg.strip() for arg in use.group(2).split(",") if arg.strip()]
        if name not in _fragments():
            raise ValueError(f"{where} uses an unknown fragment {name!r}")
        params, body = _fragments()[name]
        if len(args) != len(params):
            raise ValueError(
                f"{where}: fragment {name!r} takes {len(params)} arguments "
                f"({', '.join(params)}), not {len(args)}"
            )
        for param, arg in zip(params, args, strict=True):
            body = body.replace("{" + param + "}", arg)
        return _expand(body, where, depth + 1)

    return _USE.sub(include, text)


def load_queries(filename: str) -> dict[str, str]:
    """The named queries in ``filename``, fragments expanded; a repeated name is an error."""
    queries: dict[str, str] = {}
    for kind, name, params, text in _blocks(filename):
        if kind != "name" or params is not None:
            raise ValueError(f"{filename}: fragments belong in {FRAGMENTS_FILE} ({name!r})")
        if name in queries:
            raise ValueError(f"{filename}: query {name!r} is defined twice")
        queries[name] = _expand(text, f"{filename}: query {name!r}")
    return queries
