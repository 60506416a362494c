"""The SQL loader: named queries, and the shared fragments they include."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from omninode_bridge.services import sql
from omninode_bridge.services.sql import load_queries

SQL_FILES = sorted(
    entry.name
    for entry in resources.files(sql).iterdir()
    if entry.name.endswith(".sql") and entry.name != sql.FRAGMENTS_FILE
)


@pytest.mark.parametrize("filename", SQL_FILES)
def test_every_query_loads_with_its_fragments_expanded(filename: str) -> None:
    queries = load_queries(filename)
    assert queries
    for name, text in queries.items():
        assert "{{" not in text and "}}" not in text, (filename, name)
        assert not re.search(r"\{[a-z_]+\}", text), (filename, name)  # a parameter left


def test_a_fragment_takes_its_arguments_in_place_of_its_parameters() -> None:
    text = sql._expand("WITH fence AS ({{ fence($11, $12) }}) SELECT 1", "a test")
    assert "$11::bigint IS NULL" in text
    assert "l.name = $12::varchar AND l.generation = $11::bigint" in text
    assert "{generation}" not in text and "--" not in text  # its description is left out


def test_the_fenced_liveness_writes_include_the_fence() -> None:
    fenced = [q for q in load_queries("liveness.sql").values() if "FROM liveness_leases l" in q]
    assert len(fenced) == 4
    assert all("l.expires_at > clock_timestamp()\n    FOR SHARE)" in q for q in fenced)


def test_an_unknown_fragment_is_an_error_that_names_it() -> None:
    with pytest.raises(ValueError, match="unknown fragment 'nope'"):
        sql._expand("SELECT {{ nope($1) }}", "x.sql: query 'q'")


def test_a_wrong_number_of_arguments_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"'fence' takes 2 arguments \(generation, lease\), not 1"):
        sql._expand("SELECT {{ fence($1) }}", "x.sql: query 'q'")


def test_fragments_include_fragments() -> None:
    text = sql._expand("SELECT {{ registration_json() }} FROM tool_registrations r", "a test")
    assert "to_char(r.updated_at AT TIME ZONE 'UTC'" in text and "{{" not in text


def test_fragments_that_include_each_other_forever_are_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looping = {"a": ((), "{{ b() }}"), "b": ((), "{{ a() }}")}
    monkeypatch.setattr(sql, "_fragments", lambda: looping)
    with pytest.raises(ValueError, match="nested more than"):
        sql._expand("SELECT {{ a() }}", "x.sql: query 'q'")


def test_array_literals_are_not_taken_for_fragments() -> None:
    assert sql._expand("SELECT coalesce(x, '{}')", "x") == "SELECT coalesce(x, '{}')"
