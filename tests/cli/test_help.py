"""``toolreg ... --help`` as a user reads it, and shell completion, as real subprocesses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import typer
from typer._click import Command
from typer.core import TyperGroup, TyperOption

from omninode_bridge.cli.common import NodeTypeName, ScopeName
from omninode_bridge.cli.main import command
from omninode_bridge.models import NodeType
from omninode_bridge.services.tokens import Scope
from tests.support import clean_env, run_cli

# What typer and click print when a parameter has no metavar: Python types (<int>,
# <list[str]>, INTEGER, TEXT...) and braces around required arguments ({tool_id}).
PYTHON_TYPES = re.compile(
    r"<[a-z][a-z_ |\[\]]*>|\{[a-z_]+\}|list\[|\b(INTEGER|TEXT|FLOAT|BOOLEAN|PATH|FILENAME)\b"
)


def _commands(cmd: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    found = [(path, cmd)]
    if isinstance(cmd, TyperGroup):
        for name, sub in cmd.commands.items():
            found += _commands(sub, (*path, name))
    return found


def test_no_help_shows_a_python_type() -> None:
    every = _commands(command())
    assert len(every) > 25  # every group and command, the root included
    env = clean_env(COLUMNS="120")
    for path, _ in every:
        shown = run_cli(*path, "--help", env=env)
        assert shown.returncode == 0, (path, shown.stderr)
        assert shown.stdout.startswith("Usage: toolreg"), path
        found = PYTHON_TYPES.search(shown.stdout)
        assert found is None, f"toolreg {' '.join(path)} --help shows {found.group()!r}"


def test_every_option_with_a_default_shows_it() -> None:
    missing = []
    for path, cmd in _commands(command()):
        ctx = typer.Context(cmd, info_name=path[-1] if path else "toolreg")
        for param in cmd.params:
            if not isinstance(param, TyperOption) or param.is_flag or param.hidden:
                continue
            record = param.get_help_record(ctx)
            assert record is not None
            names, text = record
            assert " " in names, f"{names} of {path} takes a value but names none"
            if param.default not in (None, [], ()) and "default:" not in text:
                missing.append(f"toolreg {' '.join(path)} {names}")
    assert missing == []


def test_serve_help_shows_its_defaults() -> None:
    shown = run_cli("serve", "--help", env=clean_env(COLUMNS="200")).stdout
    assert re.search(r"--port PORT .*default: \(TOOLREG_PORT, else 8080\)", shown)
    assert re.search(r"--host HOST .*default: \(TOOLREG_HOST, else 127\.0\.0\.1\)", shown)
    assert re.search(r"--log-level LEVEL .*\[default: info\]", shown)


def test_choices_spelled_in_the_cli_are_the_models() -> None:
    # The CLI spells them out so that its --help need not import pydantic or asyncpg.
    assert get_args(NodeTypeName) == tuple(member.value for member in NodeType)
    assert get_args(ScopeName) == tuple(member.value for member in Scope)


def test_show_completion_prints_a_script_that_calls_toolreg() -> None:
    shown = run_cli("--show-completion", "bash", env=clean_env())
    assert shown.returncode == 0, shown.stderr
    assert "_TOOLREG_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _toolreg_completion toolreg" in shown.stdout


def test_completion_answers_commands_and_choices() -> None:
    def complete(words: str) -> list[str]:
        env = clean_env(
            _TOOLREG_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        )
        done = run_cli(env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("toolreg tools l") == ["list"]
    assert complete("toolreg tools list --node-type c") == ["compute"]
    assert "serve" in complete("toolreg ")


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    installed = run_cli("--install-completion", "bash", env=clean_env(HOME=str(tmp_path)))
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "toolreg.sh"
    assert "_TOOLREG_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
