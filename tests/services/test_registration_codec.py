"""RegistrationCodec: whatever a registration holds comes back equal, key order included,
with either dictionary; realistic registrations encode small."""

from __future__ import annotations

import random
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omninode_bridge.models import ModelToolRegistration, NodeType
from omninode_bridge.models.timestamps import UtcDateTime
from omninode_bridge.services.registration_codec import RegistrationCodec

T0 = datetime(2026, 1, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
times = st.none() | st.integers(min_value=0, max_value=10**15).map(
    lambda us: T0 + timedelta(microseconds=us)
)


@st.composite
def registrations(draw: st.DrawFn) -> ModelToolRegistration:
    return ModelToolRegistration(
        id=uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))),
        tool_id=draw(st.text(min_size=1, max_size=40)),
        node_type=draw(st.sampled_from(list(NodeType))),
        capabilities=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
        endpoints=draw(
            st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=30), max_size=5)
        ),
        metadata=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
        health_endpoint=draw(st.none() | st.text(max_size=30)),
        last_heartbeat=draw(times),
        registered_at=draw(times),
        updated_at=draw(times),
    )


def realistic(n: int) -> list[ModelToolRegistration]:
    """Registrations like a deployment's: shared shapes and values, hosts named by tool."""
    rng = random.Random(n)
    tools = []
    for i in range(n):
        operations = rng.sample(["read", "write", "list", "hash", "sign", "index"], 3)
        host = f"http://tool-{i:07d}.tools.svc.cluster.local:8080"
        tools.append(
            ModelToolRegistration(
                id=uuid.uuid4(),
                tool_id=f"tool-{i:07d}",
                node_type=rng.choice(list(NodeType)),
                capabilities={
                    "operations": operations,
                    "formats": rng.sample(["json", "yaml", "csv", "xml"], 2),
                    "max_file_size": rng.choice([1_000_000, 10_000_000]),
                    "streaming": rng.random() < 0.3,
                },
                endpoints={op: f"{host}/v1/{op}" for op in operations},
                metadata={
                    "owner": rng.choice(["platform", "data", "ml"]),
                    "region": rng.choice(["eu-west-1", "us-east-1"]),
                    "tags": rng.sample(["beta", "gpu", "batch", "internal"], 2),
                    "description": f"{operations[0]} tool #{i} maintained by the team",
                },
                health_endpoint=f"{host}/health",
                registered_at=T0,
                updated_at=T0 + timedelta(seconds=i),
                last_heartbeat=T0 + timedelta(seconds=i, microseconds=7),
            )
        )
    return tools


TRAINED = RegistrationCodec.trained(r.__dict__ for r in realistic(50))


@pytest.mark.parametrize("codec", [RegistrationCodec(), TRAINED], ids=["default", "trained"])
@settings(max_examples=150, deadline=None)
@given(registration=registrations())
def test_what_is_encoded_decodes_equal(codec: RegistrationCodec, registration: Any) -> None:
    decoded = codec.decode(codec.encode(registration))
    assert decoded == registration
    assert list(decoded.endpoints) == list(registration.endpoints)  # order: Consul's first
    assert list(decoded.capabilities) == list(registration.capabilities)
    for name in ("last_heartbeat", "registered_at", "updated_at"):
        value = getattr(decoded, name)
        assert value is None or type(value) is UtcDateTime


def test_realistic_registrations_take_about_150_bytes() -> None:
    tools = realistic(500)
    sizes = [len(TRAINED.encode(r)) for r in tools]
    json_sizes = [len(r.model_dump_json()) for r in tools]
    assert sum(sizes) / len(sizes) < 200
    assert sum(sizes) * 3 < sum(json_sizes)


def test_bytes_of_another_codec_do_not_decode() -> None:
    data = TRAINED.encode(realistic(1)[0])
    with pytest.raises(zlib.error):
        RegistrationCodec(b"an unrelated dictionary" * 10).decode(data)
