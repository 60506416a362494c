"""``toolreg``: the entry point, its global options and its error handling."""

from __future__ import annotations

import sys

import typer
import typer.main
from typer._click import Command  # typer's own click: typer.main.get_command returns one
from typer.core import TyperArgument, TyperGroup, TyperOption

from omninode_bridge import __version__
from omninode_bridge.cli import autodiscover, db, heartbeat, liveness, serve, tokens, tools
from omninode_bridge.cli.common import err_console, escape
from omninode_bridge.errors import OmniNodeBridgeError

__all__ = ["app", "run"]

app = typer.Typer(
    name="toolreg",
    help="The omninode tool registry: register, heartbeat, discover and call tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help, as click prints it: typer's rich help imports rich's markdown and
    # traceback modules first, 0.1-0.2 s of every `--help` (benchmarks/bench_cli.py).
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    # --install-completion / --show-completion; completing runs this same entry point with
    # _TOOLREG_COMPLETE set, so it is as quick as --help (benchmarks/bench_cli.py).
    add_completion=True,
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


class _NamedArgument(TyperArgument):
    """An argument shown by its name alone, as ``TOOL_ID``, ``[REVISION]`` or
    ``TOOL_IDS...``: typer's help prints its Python type (``<str>``, ``<list[str]>``)
    beside it, and braces (``{TOOL_ID}``) around it in the usage line."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:  # type: ignore[override]
        return None

    def get_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]


def _plain_help(command: Command) -> Command:
    """Help without Python types: flags show no value (typer's rich help prints
    ``<bool>``, on ``--help`` and the completion flags too) and arguments only their
    upper-case name. Every option that takes a value names it with a metavar
    (tests/cli/test_help.py checks both)."""
    ctx = typer.Context(command, info_name=command.name)
    for param in [*command.params, command.get_help_option(ctx)]:
        if isinstance(param, TyperOption) and param.is_flag:
            if param.metavar is None:
                param.metavar = ""
            if param.default is None:
                # Unset, typer would coerce it through a pydantic TypeAdapter: ~0.1 s of
                # imports on every run of a subcommand (the completion flags have None).
                param.default = False
        elif isinstance(param, TyperArgument):
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            param.__class__ = _NamedArgument
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _plain_help(sub)
    return command


def command() -> Command:
    """The ``toolreg`` command tree as click runs it."""
    return _plain_help(typer.main.get_command(app))


def run() -> None:
    """Console-script entry: errors print one line (``--debug`` for the traceback) and exit 1.

    Notes added to the exception (``add_note``) follow as ``hint:`` lines.
    """
    try:
        command()(prog_name="toolreg")
    except OmniNodeBridgeError as exc:
        if "--debug" in sys.argv[1:]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        for note in getattr(exc, "__notes__", ()):
            err_console.print(f"hint: {escape(note)}", markup=False)
        sys.exit(1)
