"""``toolreg tools``: register, list, show, search and delete tools, straight on the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from omninode_bridge.cli.common import (
    NodeTypeName,
    console,
    database,
    escape,
    new_table,
    print_json,
    run_async,
    settings_from,
)
from omninode_bridge.errors import (
    ToolAlreadyRegisteredError,
    ToolNotFoundError,
    ValidationFailedError,
)

if TYPE_CHECKING:  # pydantic, the models and rich load inside the commands (a fast --help)
    from datetime import datetime

    from rich.table import Table

    from omninode_bridge.models import ModelToolRegistration, ModelToolRegistrationCreate
    from omninode_bridge.models.status import ModelToolRegistrationWithHealth

app = typer.Typer(help="Register, list, show, search and delete tools.", no_args_is_help=True)

_NODE_TYPES = "effect, compute, reducer or orchestrator"


def _location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ``capabilities.operations[2]``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "registration"


def _load(path: Path) -> list[ModelToolRegistrationCreate]:
    """The tools in ``path``; a ValidationFailedError names each bad field by its path,
    its tool's tool_id and, in a list, its position (``[1]``)."""
    import yaml
    from pydantic import ValidationError

    from omninode_bridge.models import ModelToolRegistrationCreate

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
        where = []
        tool_id = item.get("tool_id") if isinstance(item, dict) else None
        if isinstance(tool_id, str) and tool_id:
            where.append(f"tool_id {tool_id!r}")
        if isinstance(data, list):
            where.append(f"[{index}] in {path.name}")
        of = f" of {', '.join(where)}" if where else ""
        try:
            tools.append(ModelToolRegistrationCreate.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                problems.append((_location(tuple(err["loc"])) + of, err["msg"]))
    if problems:
        raise ValidationFailedError(problems)
    return tools


def _as_dict(tool: ModelToolRegistration) -> dict[str, Any]:
    data = tool.model_dump(mode="json")
    data["heartbeat_age_seconds"] = tool.heartbeat_age_seconds
    return data


def _operations(tool: ModelToolRegistration) -> str:
    """``capabilities.operations`` as text: capabilities are free JSON, so anything goes."""
    operations = tool.capabilities.get("operations", [])
    if operations is None:
        return ""
    return ", ".join(map(str, operations)) if isinstance(operations, list) else str(operations)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _metadata_summary(metadata: dict[str, Any]) -> str:
    """Scalars as key=value, nested values by their size (in full with --json)."""
    parts = []
    for key, value in metadata.items():
        if isinstance(value, list):
            shown = f"(list of {len(value)})"
        elif isinstance(value, dict):
            shown = f"(object of {len(value)})"
        else:
            shown = str(value)
        parts.append(f"{key}={shown}")
    return ", ".join(parts) or "-"


def _table(
    tools: list[ModelToolRegistration],
    ttl: float,
    critical: set[str] | None = None,
    *,
    wide: bool = False,
) -> Table:
    """Ids, URLs and every other cell wrap (a long word folds) rather than being cut, so
    a narrow terminal shows each value whole, over several lines. The id keeps to one
    line while the other columns leave it room."""
    headers = ["tool_id", "node_type", "operations"]
    if wide:
        headers += ["endpoints", "health_endpoint", "metadata"]
    headers += ["health", "last seen"]
    rows: list[list[str]] = []
    for tool in tools:
        ops = _operations(tool)
        if not tool.is_healthy(ttl):
            health = "stale"
        elif critical and tool.tool_id in critical:
            health = "critical"  # heartbeating, but failing its health checks
        else:
            health = "healthy"
        row = [tool.tool_id, tool.node_type.value, ops]
        if wide:
            endpoints = "\n".join(f"{op}: {url}" for op, url in tool.endpoints.items())
            row += [endpoints or "-", tool.health_endpoint or "-", _metadata_summary(tool.metadata)]
        rows.append([*row, health, _age(tool.heartbeat_age_seconds)])
    natural = [
        max([len(header)] + [len(line) for row in rows for line in row[i].splitlines()])
        for i, header in enumerate(headers)
    ]
    room = console.width - (3 * len(headers) + 1) - sum(natural[1:])  # borders and padding
    table = new_table()
    for header in headers:
        first = header == "tool_id" and room >= 8
        table.add_column(
            header, overflow="fold", min_width=min(natural[0], room) if first else None
        )
    for row in rows:
        colour = "green" if row[-2] == "healthy" else "red"
        table.add_row(*map(escape, row[:-2]), f"[{colour}]{row[-2]}[/]", row[-1])
    return table


@app.command()
def register(
    ctx: typer.Context,
    file: Path = typer.Option(
        ..., "-f", "--file", metavar="FILE", help="YAML or JSON: one tool or a list."
    ),
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

    try:
        done = run_async(go())
    except ToolAlreadyRegisteredError as exc:
        exc.add_note(
            f"nothing was registered; to replace existing tools: "
            f"toolreg tools register --upsert -f {file}"
        )
        raise
    for registration, created in done:
        verb = "registered" if created else "replaced"
        console.print(f"{verb} {registration.tool_id} (id {registration.id})")


@app.command("list")
def list_tools(
    ctx: typer.Context,
    node_type: NodeTypeName | None = typer.Option(
        None, "--node-type", metavar="TYPE", case_sensitive=False, help=f"Only {_NODE_TYPES}."
    ),
    wide: bool = typer.Option(
        False, "--wide", "-w", help="Also endpoints, health endpoint and a metadata summary."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (every field)."),
) -> None:
    """List registered tools with their health and last-seen age.

    Nothing is cut: on a narrow terminal long ids and URLs wrap onto more lines.
    """
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
        console.print(_table(tools, settings.ttl_seconds, critical, wide=wide))


@app.command()
def show(
    ctx: typer.Context,
    tool_id: str = typer.Argument(..., metavar="TOOL_ID", help="The tool's id."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Machine-readable: GET /v1/tools/TOOL_ID's document and heartbeat_age_seconds.",
    ),
) -> None:
    """Show one tool: every field of its registration and its health now."""
    settings = settings_from(ctx)

    async def go() -> ModelToolRegistrationWithHealth | None:
        async with database(settings) as repository:
            return await repository.get_registration_with_health(tool_id, settings.ttl_seconds)

    tool = run_async(go())
    if tool is None:
        raise ToolNotFoundError(tool_id)
    if as_json:
        print_json(_as_dict(tool))
        return
    console.print(_fields(tool, settings.ttl_seconds))


def _when(moment: datetime | None) -> str:
    """A UTC time as the API writes it (``...Z``); ``never`` for none."""
    return "never" if moment is None else moment.isoformat().replace("+00:00", "Z")


def _fields(tool: ModelToolRegistrationWithHealth, ttl_seconds: float) -> Table:
    """One row per field: the registration, then its health (heartbeat and checks)."""
    import orjson
    from rich.table import Table

    health = tool.health
    colour = "green" if health.status == "healthy" else "red"
    beat = "within" if health.heartbeat_fresh else "older than"
    checks: str = health.check_status
    if health.check_since is not None:
        checks += f" since {_when(health.check_since)}"
    if health.last_checked_at is not None:
        checks += f", last checked {_when(health.last_checked_at)}"
    rows = [
        ("tool_id", escape(tool.tool_id)),
        ("id", str(tool.id)),
        ("node_type", tool.node_type.value),
        ("health", f"[{colour}]{health.status}[/]"),
        ("heartbeat", f"{_age(tool.heartbeat_age_seconds)} ({beat} the TTL of {ttl_seconds:g}s)"),
        ("checks", escape(checks)),
        ("operations", escape(_operations(tool) or "-")),
        ("capabilities", escape(orjson.dumps(tool.capabilities).decode())),
        *((f"endpoint {name}", escape(url)) for name, url in tool.endpoints.items()),
        ("health_endpoint", escape(tool.health_endpoint or "-")),
        ("metadata", escape(orjson.dumps(tool.metadata).decode())),
        ("registered_at", _when(tool.registered_at)),
        ("updated_at", _when(tool.updated_at)),
        ("last_heartbeat", _when(tool.last_heartbeat)),
    ]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command()
def delete(
    ctx: typer.Context,
    tool_id: str = typer.Argument(..., metavar="TOOL_ID", help="The tool's id."),
) -> None:
    """Deregister a tool."""
    settings = settings_from(ctx)

    async def go() -> bool:
        async with database(settings) as repository:
            return await repository.delete_registration(tool_id, reason="deleted with toolreg")

    if not run_async(go()):
        raise ToolNotFoundError(tool_id)
    console.print(f"deleted {tool_id}")


def _jsonpath_string(text: str) -> str:
    import orjson

    return orjson.dumps(text).decode()  # a JSON string is a valid SQL/JSON path string literal


def _capability_predicate(spec: str) -> str:
    import orjson

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
        [],
        "--capability",
        "-c",
        metavar="KEY=VALUE",
        show_default=False,
        help="Lists match when they contain VALUE. Repeatable (all must match).",
    ),
    where: str | None = typer.Option(
        None, "--where", metavar="JSONPATH", help="SQL/JSON path, e.g. '$.max_file_size > 1000'."
    ),
    node_type: NodeTypeName | None = typer.Option(
        None, "--node-type", metavar="TYPE", case_sensitive=False, help=f"Only {_NODE_TYPES}."
    ),
    healthy_within: float | None = typer.Option(
        None,
        "--healthy-within",
        metavar="SECONDS",
        help="Only tools whose last heartbeat is at most this old.",
    ),
    limit: int = typer.Option(
        100, "--limit", metavar="N", min=1, max=1000, help="At most this many tools."
    ),
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
