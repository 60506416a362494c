"""The Consul ``filter`` subset at its bounds: hostile nesting is a 422, never a crash.

Parsing and evaluating recursed once per level: 200 parentheses or 1,000 ``not``
(within the 4,096 characters allowed) ran out of Python's stack, and the server
answered 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from omninode_bridge.api.consul.filter import MAX_DEPTH, compile_filter
from omninode_bridge.errors import ValidationFailedError

FIELDS = frozenset({"Node", "Service", "Checks"})
ENTRY: dict[str, Any] = {
    "Node": {"Node": "n"},
    "Service": {"Meta": {"team": "x"}, "Tags": ["a"]},
    "Checks": [{"Status": "passing"}],
}
MATCH = 'Service.Meta.team == "x"'


@pytest.mark.parametrize(
    "text",
    [
        "(" * 200 + MATCH + ")" * 200,
        "not " * 1000 + MATCH,
        "(not " * (MAX_DEPTH // 2 + 1) + MATCH + ")" * (MAX_DEPTH // 2 + 1),
    ],
    ids=["parentheses", "nots", "mixed"],
)
def test_nesting_past_the_bound_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValidationFailedError, match="nest more than"):
        compile_filter(text, FIELDS)


def test_nesting_up_to_the_bound_and_the_longest_chains_evaluate() -> None:
    assert compile_filter("(" * MAX_DEPTH + MATCH + ")" * MAX_DEPTH, FIELDS)(ENTRY)
    assert compile_filter("not " * MAX_DEPTH + MATCH, FIELDS)(ENTRY)  # an even number
    # 4,096 characters of `or` and of `and`: one level of evaluation each.
    miss, hit = 'Node.Node == "m"', 'Node.Node == "n"'
    ors = " or ".join([miss] * 200 + [hit])
    ands = " and ".join([hit] * 190 + [miss])
    assert len(ors) < 4096 and len(ands) < 4096
    assert compile_filter(ors, FIELDS)(ENTRY)
    assert not compile_filter(ands, FIELDS)(ENTRY)
    both = f"({' and '.join([hit] * 90 + [miss])}) or ({' or '.join([miss] * 90 + [hit])})"
    assert compile_filter(both, FIELDS)(ENTRY)
