"""Property: whatever a model accepts, the database stores and returns unchanged."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.services import PostgresClient, ToolRegistrationRepository
from tests.support import base_settings

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
tool_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}", fullmatch=True)
urls = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9/_.-]{0,30}", fullmatch=True),
)


@pytest.fixture
def loop_and_repo(
    db_dsn: str,
) -> Iterator[tuple[asyncio.AbstractEventLoop, ToolRegistrationRepository]]:
    loop = asyncio.new_event_loop()
    client = PostgresClient(base_settings(pool_max_size=2), dsn=db_dsn)
    loop.run_until_complete(client.connect())
    try:
        yield loop, ToolRegistrationRepository(client)
    finally:
        loop.run_until_complete(client.close())
        loop.close()


_counter = itertools.count()


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tool_id=tool_ids,
    node_type=st.sampled_from(["effect", "COMPUTE", "Reducer", "orchestrator"]),
    capabilities=json_objects,
    metadata=json_objects,
    endpoints=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), urls, max_size=3
    ),
    health=st.none() | urls,
)
def test_accepted_models_round_trip_unchanged(
    loop_and_repo: tuple[asyncio.AbstractEventLoop, ToolRegistrationRepository],
    tool_id: str,
    node_type: str,
    capabilities: dict[str, Any],
    metadata: dict[str, Any],
    endpoints: dict[str, str],
    health: str | None,
) -> None:
    loop, repository = loop_and_repo
    try:
        model = ModelToolRegistrationCreate(
            tool_id=f"{tool_id}-{next(_counter)}",
            node_type=node_type,
            capabilities=capabilities,
            metadata=metadata,
            endpoints=endpoints,
            health_endpoint=health,
        )
    except ValidationError:
        return  # rejected input is covered by the bad-input tables
    stored = loop.run_until_complete(repository.create_registration(model))
    fetched = loop.run_until_complete(repository.get_registration(model.tool_id))
    assert fetched == stored
    assert fetched is not None
    assert fetched.capabilities == model.capabilities
    assert fetched.metadata == model.metadata
    assert fetched.endpoints == model.endpoints
    assert fetched.health_endpoint == model.health_endpoint
    assert fetched.node_type == model.node_type
    # Every value contains itself: containment on any stored capability finds the tool.
    for key, value in list(model.capabilities.items())[:2]:
        found = loop.run_until_complete(repository.find_by_capability(key, value))
        assert model.tool_id in {t.tool_id for t in found}
