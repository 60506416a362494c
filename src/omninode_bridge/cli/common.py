"""What every ``toolreg`` command shares: settings, async running, the database, output.

The CLI starts in well under a second because nothing heavy is imported at
module level here or in the command modules: pydantic, asyncpg, the models and
the services load inside the command that uses them (``toolreg --help`` never
pays for them; ``benchmarks/bench_cli.py`` keeps it so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import typer

from omninode_bridge.text import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from omninode_bridge.services import ToolRegistrationRepository
    from omninode_bridge.settings import Settings

__all__ = [
    "NodeTypeName",
    "ScopeName",
    "console",
    "database",
    "err_console",
    "escape",
    "new_table",
    "print_json",
    "run_async",
    "settings_from",
]

T = TypeVar("T")

# The choices of --node-type and --scope, spelled out so that parsing the command line
# does not import the models (pydantic) or the services (asyncpg); tests/cli/test_help.py
# checks that they equal NodeType and Scope.
NodeTypeName = Literal["effect", "compute", "reducer", "orchestrator"]
ScopeName = Literal["read", "write", "admin"]


class _Output:
    """A rich Console for stdout or stderr, made on first use: importing rich costs some
    40 ms that ``--help`` and shell completion do without."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def rich(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        """``rich.console.Console.print``: markup on, no highlighting, lines not wrapped."""
        self.rich.print(*objects, **options)

    @property
    def width(self) -> int:
        """The terminal's width in columns (``COLUMNS``, or 80 when not a terminal)."""
        return self.rich.width


console = _Output(stderr=False)
err_console = _Output(stderr=True)


def escape(text: str) -> str:
    """``text`` made safe to print: rich markup (``[red]``) literal, and control and
    format characters but tab and newline (an ESC that would clear the screen, a
    right-to-left override that would reorder it) shown as ``\\u001b``-style escapes:
    registrations are anybody's text."""
    from rich.markup import escape

    return escape(visible(text, lines=True))


def new_table(*headers: str) -> Table:
    """A rich table with these column headers (rich loads on first use)."""
    from rich.table import Table

    return Table(*headers)


def settings_from(ctx: typer.Context) -> Settings:
    """The settings for this invocation, read once from the environment."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        from omninode_bridge.settings import load_settings

        obj["settings"] = load_settings()
    settings: Settings = obj["settings"]
    return settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion."""
    import asyncio  # not at module level: --help does without it

    return asyncio.run(coro)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[ToolRegistrationRepository]:
    """A repository on a small pool, closed when the command ends."""
    from omninode_bridge.services import PostgresClient, ToolRegistrationRepository

    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 4})
    async with PostgresClient(small) as client:
        yield ToolRegistrationRepository(client)


def print_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    import orjson

    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
