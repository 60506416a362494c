"""``toolreg``: the entry point, its global options and its error handling."""

from __future__ import annotations

import sys

import typer

from omninode_bridge import __version__
from omninode_bridge.cli import autodiscover, db, heartbeat, liveness, serve, tokens, tools
from omninode_bridge.cli.common import err_console
from omninode_bridge.errors import OmniNodeBridgeError

__all__ = ["app", "run"]

app = typer.Typer(
    name="toolreg",
    help="The omninode tool registry: register, heartbeat, discover and call tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(tools.app, name="tools")
app.add_typer(tokens.app, name="token")
app.add_typer(autodiscover.app, name="autodiscover")
app.command("serve")(serve.serve)
app.command("heartbeat")(heartbeat.heartbeat)
app.command("reap")(liveness.reap)
app.command("check")(liveness.check)
tools.app.command("history")(liveness.history)


def _version(value: bool) -> None:
    if value:
        print(f"toolreg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Settings come from the environment: DATABASE_URL, or POSTGRES_*, or the embedded default."""


def run() -> None:
    """Console-script entry: errors print one line (``--debug`` for the traceback) and exit 1."""
    try:
        app()
    except OmniNodeBridgeError as exc:
        if "--debug" in sys.argv[1:]:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(1)
