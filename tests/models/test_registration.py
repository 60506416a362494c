"""The registration models: one bad-input case per rule, each naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from omninode_bridge.models import (
    ModelToolRegistrationCreate,
    ModelToolRegistrationUpdate,
    NodeType,
)

GOOD: dict[str, Any] = {
    "tool_id": "metadata-stamping-v1",
    "node_type": "effect",
    "capabilities": {"operations": ["stamp"]},
    "endpoints": {"stamp": "http://metadata-service:8053/api/v1/stamp"},
    "metadata": {"version": "1.0.0"},
    "health_endpoint": "http://metadata-service:8053/health",
}

# (case id, overrides, field loc expected in the error)
BAD_INPUT: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    ("empty tool_id", {"tool_id": ""}, ("tool_id",)),
    ("tool_id too long", {"tool_id": "a" * 256}, ("tool_id",)),
    ("tool_id with slash", {"tool_id": "a/b"}, ("tool_id",)),
    ("tool_id with space", {"tool_id": "a b"}, ("tool_id",)),
    ("tool_id starting with dash", {"tool_id": "-a"}, ("tool_id",)),
    ("tool_id injection", {"tool_id": "x'; DROP TABLE tool_registrations;--"}, ("tool_id",)),
    ("unknown node_type", {"node_type": "gateway"}, ("node_type",)),
    ("ftp endpoint", {"endpoints": {"stamp": "ftp://x"}}, ("endpoints", "stamp")),
    ("relative endpoint", {"endpoints": {"stamp": "/api/v1/a"}}, ("endpoints", "stamp")),
    (
        "javascript endpoint",
        {"endpoints": {"stamp": "javascript:alert(1)"}},
        ("endpoints", "stamp"),
    ),
    ("endpoint without host", {"endpoints": {"stamp": "http:///path"}}, ("endpoints", "stamp")),
    ("endpoint with space", {"endpoints": {"stamp": "http://h/a b"}}, ("endpoints", "stamp")),
    ("endpoint too long", {"endpoints": {"s": "http://h/" + "a" * 2048}}, ("endpoints", "s")),
    ("endpoint bad port", {"endpoints": {"s": "http://h:99999/"}}, ("endpoints", "s")),
    ("endpoint not a string", {"endpoints": {"s": 5}}, ("endpoints", "s")),
    ("endpoints a list", {"endpoints": ["http://h/"]}, ("endpoints",)),
    ("empty operation name", {"endpoints": {"": "http://h/"}}, ("endpoints",)),
    ("health ftp", {"health_endpoint": "ftp://h/health"}, ("health_endpoint",)),
    ("health too long", {"health_endpoint": "http://h/" + "a" * 500}, ("health_endpoint",)),
    ("capabilities a list", {"capabilities": ["stamp"]}, ("capabilities",)),
    ("capabilities NUL value", {"capabilities": {"a": "x\x00y"}}, ("capabilities",)),
    ("capabilities NUL key", {"capabilities": {"a\x00": 1}}, ("capabilities",)),
    ("capabilities NaN", {"capabilities": {"a": float("nan")}}, ("capabilities",)),
    ("capabilities too big", {"capabilities": {"a": "x" * 70_000}}, ("capabilities",)),
    (
        "capabilities too deep",
        {"capabilities": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
        ("capabilities",),
    ),
    ("capabilities non-JSON value", {"capabilities": {"a": {1, 2}}}, ("capabilities",)),
    ("capabilities int too big", {"capabilities": {"a": 2**70}}, ("capabilities",)),
    ("metadata a list", {"metadata": [1]}, ("metadata",)),
    ("metadata NUL nested", {"metadata": {"a": [{"b": "\x00"}]}}, ("metadata",)),
    ("unknown field", {"owner": "me"}, ("owner",)),
]


@pytest.mark.parametrize(
    ("overrides", "loc"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_create_rejects_and_names_the_field(
    overrides: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        ModelToolRegistrationCreate(**{**GOOD, **overrides})
    locs = [tuple(err["loc"]) for err in info.value.errors()]
    assert loc in locs, locs


def test_good_input_is_accepted_and_node_type_is_case_insensitive() -> None:
    model = ModelToolRegistrationCreate(**{**GOOD, "node_type": "EfFeCt"})
    assert model.node_type is NodeType.EFFECT
    assert str(model.node_type) == "effect"


def test_json_is_normalized_as_jsonb_will_store_it() -> None:
    model = ModelToolRegistrationCreate(**{**GOOD, "capabilities": {"t": (1, 2), "n": None}})
    assert model.capabilities == {"t": [1, 2], "n": None}


def test_size_bound_is_configurable_through_context() -> None:
    data = {**GOOD, "metadata": {"a": "x" * 100}}
    with pytest.raises(ValidationError, match="at most 50"):
        ModelToolRegistrationCreate.model_validate(data, context={"max_json_bytes": 50})
    assert ModelToolRegistrationCreate.model_validate(data).metadata == {"a": "x" * 100}


def test_update_sets_only_what_is_given() -> None:
    update = ModelToolRegistrationUpdate(metadata={"version": "1.1.0"})
    assert update.model_fields_set == {"metadata"}
    assert not update.is_empty
    assert ModelToolRegistrationUpdate().is_empty


@pytest.mark.parametrize("field", ["node_type", "capabilities", "endpoints", "metadata"])
def test_update_refuses_null_for_non_nullable_fields(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModelToolRegistrationUpdate(**{field: None})
    assert [tuple(e["loc"]) for e in info.value.errors()] == [(field,)]


def test_update_validates_like_create() -> None:
    with pytest.raises(ValidationError) as info:
        ModelToolRegistrationUpdate(endpoints={"x": "javascript:alert(1)"}, node_type="gateway")
    locs = {tuple(e["loc"]) for e in info.value.errors()}
    assert locs == {("endpoints", "x"), ("node_type",)}


def test_update_may_clear_the_health_endpoint() -> None:
    update = ModelToolRegistrationUpdate(health_endpoint=None)
    assert update.model_fields_set == {"health_endpoint"}
