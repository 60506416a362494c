"""The served OpenAPI document: every property described, every operation exemplified,
every example valid against its schema and accepted by a real server, and the
constraints shown in it no looser than the validators that enforce them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pydantic
import pytest
from jsonschema import Draft202012Validator

from omninode_bridge.api import examples
from omninode_bridge.models import ModelToolRegistrationCreate
from omninode_bridge.models.fields import HEALTH_ENDPOINT_MAX_LENGTH
from tests.support import Server, bearer

JSON = "application/json"
Spec = dict[str, Any]


@pytest.fixture
async def spec(http: httpx.AsyncClient) -> Spec:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document: Spec = response.json()
    return document


def operations(spec: Spec) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def media_examples(media: dict[str, Any]) -> list[Any]:
    """The examples a media type gives (``example`` or each of ``examples``)."""
    found = [media["example"]] if "example" in media else []
    return found + [entry["value"] for entry in media.get("examples", {}).values()]


def validator(spec: Spec, schema: dict[str, Any]) -> Draft202012Validator:
    """Validates against ``schema``, its ``#/components/...`` references resolved in ``spec``."""
    return Draft202012Validator({**schema, "components": spec["components"]})


async def test_every_property_has_a_description(spec: Spec) -> None:
    schemas = spec["components"]["schemas"]
    undescribed = [
        f"{name}.{prop}"
        for name, schema in schemas.items()
        for prop, definition in schema.get("properties", {}).items()
        if not definition.get("description")
    ]
    assert len(schemas) > 20  # the registration, page, token, problem... models are there
    assert undescribed == []


async def test_every_json_body_and_answer_has_a_valid_example(spec: Spec) -> None:
    missing: list[str] = []
    checked = 0
    for name, operation in operations(spec):
        media_by_part = {"request": operation.get("requestBody", {}).get("content", {})}
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                media_by_part[status] = response.get("content", {})
        for part, content in media_by_part.items():
            if JSON not in content:
                continue
            media = content[JSON]
            found = media_examples(media)
            if not found:
                missing.append(f"{name} {part}")
            for example in found:
                errors = [e.message for e in validator(spec, media["schema"]).iter_errors(example)]
                assert errors == [], f"{name} {part}: {errors}"
                checked += 1
    assert missing == []
    assert checked >= 20


async def test_request_examples_are_accepted(
    http: httpx.AsyncClient, server: Server, uid: str
) -> None:
    """What the document shows a client sending works as shown."""
    headers = bearer(await server.token("admin"))
    tool_id = f"stamper-{uid}"
    created = await http.post(
        "/v1/tools", json={**examples.REGISTRATION_CREATE, "tool_id": tool_id}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert set(created.json()) == set(examples.REGISTRATION)
    patched = await http.patch(
        f"/v1/tools/{tool_id}", json=examples.REGISTRATION_UPDATE, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"] == examples.REGISTRATION_UPDATED["metadata"]
    shown = await http.get(f"/v1/tools/{tool_id}", headers=headers)
    assert set(shown.json()) == set(examples.REGISTRATION_WITH_HEALTH)
    assert set(shown.json()["health"]) == set(examples.REGISTRATION_WITH_HEALTH["health"])
    for path, example in (
        ("/v1/tools/search", examples.SEARCH),
        ("/v1/heartbeats", examples.HEARTBEATS),
        ("/v1/console/tools", examples.CONSOLE_QUERY),
    ):
        answered = await http.post(path, json=example, headers=headers)
        assert answered.status_code == 200, (path, answered.text)
    explained = await http.get("/v1/discover/stamp/explain", headers=headers)
    assert set(explained.json()) == set(examples.EXPLANATION)


def test_schema_constraints_are_no_looser_than_the_validators() -> None:
    """Whatever the model accepts, the JSON Schema it publishes accepts too, and the
    documented bounds (health_endpoint http/https and at most 500 characters, tool_id
    pattern, endpoint names) are in the schema."""
    schema = ModelToolRegistrationCreate.model_json_schema()
    health = schema["properties"]["health_endpoint"]["anyOf"][0]
    assert health["maxLength"] == HEALTH_ENDPOINT_MAX_LENGTH
    assert schema["properties"]["tool_id"]["pattern"]
    assert schema["properties"]["endpoints"]["propertyNames"]["pattern"]
    check = Draft202012Validator(schema)
    host = "http://h.example/"
    candidates = [
        host,
        "HTTPS://h.example:8443/x?y=1",
        "ftp://h.example/",
        "http:///nohost",
        "http://h.example/a b",
        host + "x" * (HEALTH_ENDPOINT_MAX_LENGTH - len(host)),
        host + "x" * (HEALTH_ENDPOINT_MAX_LENGTH - len(host) + 1),
    ]
    outcomes = []
    for url in candidates:
        payload = {
            "tool_id": "t-1",
            "node_type": "effect",
            "health_endpoint": url,
            "endpoints": {"op/x": url, "bad name": url},
        }
        for document in (payload, {**payload, "endpoints": {"op/x": url}}):
            try:
                ModelToolRegistrationCreate.model_validate(document)
                accepted = True
            except pydantic.ValidationError:
                accepted = False
            if accepted:
                assert check.is_valid(document), document
            outcomes.append(accepted)
    assert True in outcomes and False in outcomes
    over = {"tool_id": "t-1", "node_type": "effect", "health_endpoint": candidates[-1]}
    assert not check.is_valid(over)  # the schema, too, refuses 501 characters
