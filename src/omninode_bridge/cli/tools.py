"""``toolreg tools``: register, list, show, search and delete tools, straight on the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from pydantic import ValidationError
from rich.table import Table

from omninode_bridge.cli.common import console, database, print_json, run_async, settings_from
from omninode_bridge.errors import ToolNotFoundError, ValidationFailedError
from omninode_bridge.models import ModelToolRegistration, ModelToolRegistrationCreate, NodeType

app = typer.Typer(help="Register, list, show, search and delete tools.", no_args_is_help=True)


def _load(path: Path) -> list[ModelToolRegistrationCreate]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailedError([("file", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise ValidationFailedError(
            [("file", f"{path} is neither valid YAML nor JSON: {exc}")]
        ) from None
    items = data if isinstance(data, list) else [data]
    tools: list[ModelToolRegistrationCreate] = []
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        prefix = f"[{index}]." if isinstance(data, list) else ""
        try:
            tools.append(ModelToolRegistrationCreate.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "tool"
                problems.append((prefix + loc, err["msg"]))
    if problems:
        raise ValidationFailedError(problems)
    return tools


def _as_dict(tool: ModelToolRegistration) -> dict[str, Any]:
    data = tool.model_dump(mode="json")
    data["heartbeat_age_seconds"] = tool.heartbeat_age_seconds
    return data


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _table(
    tools: list[ModelToolRegistration], ttl: float, critical: set[str] | None = None
) -> Table:
    table = Table("tool_id", "node_type", "operations", "health", "last seen")
    for tool in tools:
        operations = tool.capabilities.get("operations", [])
        ops = ", ".join(map(str, operations)) if isinstance(operations, list) else str(operations)
        if not tool.is_healthy(ttl):
            health = "[red]stale[/]"
        elif critical and tool.tool_id in critical:
            health = "[red]critical[/]"  # heartbeating, but failing its health checks
        else:
            health = "[green]healthy[/]"
        table.add_row(
            tool.tool_id, tool.node_type.value, ops, health, _age(tool.heartbeat_age_seconds)
        )
    return table


@app.command()
def register(
    ctx: typer.Context,
    file: Path = typer.Option(..., "-f", "--file", help="YAML or JSON: one tool or a list."),
    upsert: bool = typer.Option(
        False, "--upsert", help="Replace tools that exist instead of failing."
    ),
) -> None:
    """Register the tools in FILE; a list goes in one transaction (all or nothing)."""
    settings = settings_from(ctx)
    tools = _load(file)

    async def go() -> list[tuple[ModelToolRegistration, bool]]:
        async with database(settings) as repository:
            if upsert:
                return [await repository.upsert_registration(t) for t in tools]
            return [(r, True) for r in await repository.create_registrations(tools)]

    for registration, created in run_async(go()):
        verb = "registered" if created else "replaced"
        console.print(f"{verb} {registration.tool_id} (id {registration.id})")


@app.command("list")
def list_tools(
    ctx: typer.Context,
    node_type: NodeType | None = typer.Option(None, "--node-type", help="Only this node type."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List registered tools with their health and last-seen age."""
    settings = settings_from(ctx)

    async def go() -> tuple[list[ModelToolRegistration], set[str]]:
        from omninode_bridge.liveness import HealthHistory  # httpx & co: only when listing

        async with database(settings) as repository:
            tools = await repository.list_all_registrations(node_type)
            critical = await HealthHistory(
                repository.client, settings.ttl_seconds
            ).critical_tool_ids()
            return tools, critical

    tools, critical = run_async(go())
    if as_json:
        print_json([{**_as_dict(t), "critical": t.tool_id in critical} for t in tools])
    elif not tools:
        console.print("no tools registered")
    else:
        console.print(_table(tools, settings.ttl_seconds, critical))


@app.command()
def show(
    ctx: typer.Context,
    tool_id: str = typer.Argument(..., help="The tool's id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show one tool's full registration."""
    settings = settings_from(ctx)

    async def go() -> ModelToolRegistration | None:
        async with database(settings) as repository:
            return await repository.get_registration(tool_id)

    tool = run_async(go())
    if tool is None:
        raise ToolNotFoundError(tool_id)
    if as_json:
        print_json(_as_dict(tool))
        return
    console.print(_table([tool], settings.ttl_seconds))
    console.print(orjson.dumps(tool.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())


@app.command()
def delete(ctx: typer.Context, tool_id: str = typer.Argument(..., help="The tool's id.")) -> None:
    """Deregister a tool."""
    settings = settings_from(ctx)

    async def go() -> bool:
        async with database(settings) as repository:
            return await repository.delete_registration(tool_id, reason="deleted with toolreg")

    if not run_async(go()):
        raise ToolNotFoundError(tool_id)
    console.print(f"deleted {tool_id}")


def _jsonpath_string(text: str) -> str:
    return orjson.dumps(text).decode()  # a JSON string is a valid SQL/JSON path string literal


def _capability_predicate(spec: str) -> str:
    key, sep, raw = spec.partition("=")
    if not sep or not key:
        raise ValidationFailedError([("capability", f"{spec!r} must look like KEY=VALUE")])
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw  # a bare word is a string
    if isinstance(value, dict | list):
        raise ValidationFailedError(
            [("capability", "VALUE must be a string, number, true/false or null")]
        )
    literal = orjson.dumps(value).decode()
    # Lax mode: a list-valued capability matches when any element equals VALUE.
    return f"$.{_jsonpath_string(key)} == {literal}"


@app.command()
def search(
    ctx: typer.Context,
    capability: list[str] = typer.Option(
        [], "--capability", "-c", help="KEY=VALUE; lists match when they contain VALUE. Repeatable."
    ),
    where: str | None = typer.Option(
        None, "--where", help="SQL/JSON path, e.g. '$.max_file_size > 1000'."
    ),
    node_type: NodeType | None = typer.Option(None, "--node-type"),
    healthy_within: float | None = typer.Option(None, "--healthy-within", help="Seconds."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Find tools by capability, node type, freshness and SQL/JSON path."""
    settings = settings_from(ctx)
    predicates = [_capability_predicate(c) for c in capability]
    if where:
        predicates.append(f"({where})")
    path = " && ".join(predicates) if predicates else None

    async def go() -> list[ModelToolRegistration]:
        async with database(settings) as repository:
            page = await repository.find_tools(
                node_type=node_type, max_age_seconds=healthy_within, where=path, limit=limit
            )
            return page.items

    tools = run_async(go())
    if as_json:
        print_json([_as_dict(t) for t in tools])
    elif not tools:
        console.print("no tools match")
    else:
        console.print(_table(tools, settings.ttl_seconds))
