"""IdSet behaves as a set of strings through any sequence of adds and discards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from omninode_bridge.services.id_set import IdSet

ids = st.text(alphabet="abcdef", min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    start=st.lists(ids, unique=True, max_size=80),
    steps=st.lists(st.tuples(st.booleans(), ids), max_size=400),
)
def test_same_members_as_a_set(start: list[str], steps: list[tuple[bool, str]]) -> None:
    compact, model = IdSet.of_distinct(list(start)), set(start)
    for adding, item in steps:
        if adding:
            compact.add(item)
            model.add(item)
        else:
            compact.discard(item)
            model.discard(item)
        assert len(compact) == len(model)
        assert (item in compact) == (item in model)
    assert sorted(compact) == sorted(model)
    assert len(list(compact)) == len(model)  # no member twice
    assert sorted(IdSet(model)) == sorted(model)
