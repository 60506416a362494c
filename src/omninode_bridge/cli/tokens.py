"""``toolreg token``: create, list and revoke API tokens (secrets are shown once, stored hashed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from omninode_bridge.cli.common import (
    ScopeName,
    console,
    database,
    new_table,
    print_json,
    run_async,
    settings_from,
)
from omninode_bridge.errors import ValidationFailedError

if TYPE_CHECKING:  # asyncpg and the services load inside the commands (a fast --help)
    from omninode_bridge.services.tokens import CreatedToken, TokenInfo

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str | None = typer.Option(
        None,
        "--name",
        metavar="NAME",
        show_default="a generated token-XXXXXXXX",
        help="A unique name, e.g. the tool or team using it.",
    ),
    scope: ScopeName | None = typer.Option(
        None,
        "--scope",
        metavar="SCOPE",
        case_sensitive=False,
        show_default="write; with --rotate: unchanged",
        help="read, write or admin.",
    ),
    rotate: bool = typer.Option(
        False,
        "--rotate",
        help="Replace the active token of this name: its old secret stops working and the "
        "tools it owned move to the new one. Creates it if there is none.",
    ),
) -> None:
    """Create a token. Its secret is printed once, alone on the last line: store it now.

    In a script, fail loudly if it is not created:
    set -o pipefail; TOKEN=$(toolreg token create --name my-team | tail -n 1)
    """
    import secrets

    from omninode_bridge.services.tokens import Scope, TokenService

    settings = settings_from(ctx)
    chosen = name or f"token-{secrets.token_hex(4)}"
    if rotate and name is None:
        raise ValidationFailedError([("name", "--rotate needs --name: which token to rotate")])

    async def go() -> tuple[CreatedToken, int | None]:
        async with database(settings) as repository:
            service = TokenService(repository.client)
            if rotate:
                try:
                    return await service.rotate(chosen, Scope(scope) if scope else None)
                except ValidationFailedError:
                    pass  # nothing to rotate: create it
            return await service.create(chosen, Scope(scope or "write")), None

    created, moved = run_async(go())
    verb = "rotated" if moved is not None else "created"
    console.print(f"{verb} token {created.info.name!r} with scope {created.info.scope.value}")
    if moved:
        console.print(f"{moved} tools it owned now belong to the new secret")
    console.print("its secret follows; it is not stored anywhere and cannot be shown again:")
    print(created.secret)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List active tokens (never their secrets). "Last used" is recorded at most once a
    minute per token, so it may lag by up to 60 s."""
    from omninode_bridge.services.tokens import TokenService

    settings = settings_from(ctx)

    async def go() -> list[TokenInfo]:
        async with database(settings) as repository:
            return await TokenService(repository.client).list()

    tokens = run_async(go())
    if as_json:
        print_json(
            [
                {
                    "name": t.name,
                    "scope": t.scope.value,
                    "created_at": t.created_at.isoformat(),
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                }
                for t in tokens
            ]
        )
        return
    table = new_table("name", "scope", "created", "last used (recorded at most once a minute)")
    for t in tokens:
        last = t.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if t.last_used_at else "never"
        table.add_row(t.name, t.scope.value, t.created_at.strftime("%Y-%m-%d %H:%M:%S"), last)
    console.print(table)


@app.command()
def revoke(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="The token's name.")
) -> None:
    """Revoke a token: requests with it get 401 from then on."""
    from omninode_bridge.services.tokens import TokenService

    settings = settings_from(ctx)

    async def go() -> bool:
        async with database(settings) as repository:
            return await TokenService(repository.client).revoke(name)

    if not run_async(go()):
        console.print(f"no active token named {name!r}")
        raise typer.Exit(1)
    console.print(f"revoked token {name!r}")
