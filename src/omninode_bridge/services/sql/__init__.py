"""Named SQL queries, read from the ``.sql`` files beside this module.

A file holds blocks that start with ``-- name: <query_name>``; the text up to
the next such line is the query. Values are always bind parameters.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_queries"]

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load_queries(filename: str) -> dict[str, str]:
    """The named queries in ``filename``; a repeated name is an error."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match.group(1)
        if name in queries:
            raise ValueError(f"{filename}: query {name!r} is defined twice")
        queries[name] = text[match.end() : end].strip()
    return queries
