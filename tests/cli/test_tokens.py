"""``toolreg token``: create with a generated name, refuse a taken one loudly, rotate."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from omninode_bridge.errors import AuthenticationError
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from omninode_bridge.services.tokens import TokenService
from tests.support import TOOLREG, clean_env, run_cli


def _secret(output: str) -> str:
    return output.strip().splitlines()[-1]


async def test_create_rotate_and_a_loud_failure(
    db_dsn: str, postgres_client: PostgresClient
) -> None:
    env = clean_env(DATABASE_URL=db_dsn, COLUMNS="200")
    first = run_cli("token", "create", "--name", "team-a", env=env)
    assert first.returncode == 0, first.stderr
    old_secret = _secret(first.stdout)
    tokens = TokenService(postgres_client)
    old = await tokens.authenticate(old_secret)
    repository = ToolRegistrationRepository(postgres_client)
    for tool_id in ("owned-1", "owned-2"):
        registration = ModelToolRegistrationCreate(tool_id=tool_id, node_type="effect")
        await repository.create_registration(registration, owner=old.owner)

    taken = run_cli("token", "create", "--name", "team-a", env=env)
    assert taken.returncode == 1 and "--rotate" in taken.stderr
    # The README's line fails loudly instead of yielding an empty token.
    script = f"set -o pipefail; T=$({TOOLREG} token create --name team-a | tail -n 1)"
    piped = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", script], env=env, capture_output=True, check=False
    )
    assert piped.returncode != 0

    rotated = run_cli("token", "create", "--name", "team-a", "--rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "2 tools it owned" in rotated.stdout
    new = await tokens.authenticate(_secret(rotated.stdout))
    assert new.scope == old.scope and new.name == "team-a"
    with pytest.raises(AuthenticationError):
        await tokens.authenticate(old_secret)
    assert await repository.get_owner("owned-1") == new.owner

    generated = run_cli("token", "create", "--scope", "read", env=env)
    assert generated.returncode == 0, generated.stderr
    assert "created token 'token-" in generated.stdout
    listed = run_cli("token", "list", env=env)
    assert "last used" in listed.stdout and "team-a" in listed.stdout
    assert run_cli("token", "create", "--rotate", env=env).returncode == 1  # needs --name
