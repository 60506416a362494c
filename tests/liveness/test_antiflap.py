"""The anti-flap state machine, as a pure function: no database, no network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omninode_bridge.liveness import AntiFlap, CheckState, CheckStatus
from omninode_bridge.liveness.checker import transition
from omninode_bridge.models import ChangeKind

P, C, U = CheckStatus.PASSING, CheckStatus.CRITICAL, CheckStatus.UNKNOWN


def run(policy: AntiFlap, results: str, start: CheckState | None = None) -> list[CheckStatus]:
    """Statuses after each result of ``results`` ('p' pass, 'f' fail)."""
    state = start or CheckState(U)
    statuses = []
    for r in results:
        state = policy.advance(state, r == "p")
        statuses.append(state.status)
    return statuses


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("fff", [P, P, C]),
        ("ffpf", [P, P, P, P]),  # fail, fail, pass, fail... never flips early
        ("ffpffpffpff", [P] * 11),
        ("fffp", [P, P, C, C]),
        ("fffpp", [P, P, C, C, P]),
        ("fffpfpfp", [P, P, C, C, C, C, C, C]),  # pass, fail, pass... never comes back early
        ("fffpfpp", [P, P, C, C, C, C, P]),
        ("ppppfff", [P, P, P, P, P, P, C]),
        ("fffffff", [P, P, C, C, C, C, C]),
    ],
)
def test_default_thresholds(results: str, expected: list[CheckStatus]) -> None:
    assert run(AntiFlap(), results) == expected


def test_counters_track_the_current_run() -> None:
    policy = AntiFlap()
    state = CheckState(U)
    for r, failures, successes in [("f", 1, 0), ("f", 2, 0), ("p", 0, 1), ("f", 1, 0)]:
        state = policy.advance(state, r == "p")
        assert (state.failures, state.successes) == (failures, successes)


def test_configurable_thresholds() -> None:
    assert run(AntiFlap(fail_threshold=1, pass_threshold=1), "fpfp") == [C, P, C, P]
    assert run(AntiFlap(fail_threshold=5, pass_threshold=3), "ffff") == [P] * 4
    assert run(AntiFlap(fail_threshold=5, pass_threshold=3), "fffffppfppp")[-1] is P
    assert run(AntiFlap(fail_threshold=5, pass_threshold=3), "fffffppfpp")[-1] is C
    with pytest.raises(ValueError, match="at least 1"):
        AntiFlap(fail_threshold=0)


def test_a_new_tool_starts_passing_and_unchecked_is_unknown() -> None:
    assert AntiFlap().advance(CheckState(U), True) == CheckState(P, 0, 1)
    assert AntiFlap().advance(CheckState(U), False) == CheckState(P, 1, 0)
    assert AntiFlap.unchecked() == CheckState(U, 0, 0)


def test_transitions_are_events_into_and_out_of_critical() -> None:
    assert transition(P, C) is ChangeKind.CRITICAL
    assert transition(U, C) is ChangeKind.CRITICAL
    assert transition(C, P) is ChangeKind.PASSING
    assert transition(C, U) is ChangeKind.PASSING  # health endpoint removed: routable again
    assert transition(P, P) is None
    assert transition(C, C) is None
    assert transition(U, P) is None
    assert transition(P, U) is None


def reference(results: list[bool], fail_at: int, pass_at: int) -> list[CheckStatus]:
    """The rule stated directly: flip only when the current run reaches the threshold."""
    status, run_length, last = P, 0, None
    out = []
    for ok in results:
        run_length = run_length + 1 if ok == last else 1
        last = ok
        if not ok and status is P and run_length >= fail_at:
            status = C
        elif ok and status is C and run_length >= pass_at:
            status = P
        out.append(status)
    return out


@given(
    results=st.lists(st.booleans(), max_size=60),
    fail_at=st.integers(1, 6),
    pass_at=st.integers(1, 6),
)
def test_matches_the_rule_for_any_sequence(results: list[bool], fail_at: int, pass_at: int) -> None:
    policy = AntiFlap(fail_at, pass_at)
    state = CheckState(U)
    statuses = []
    for ok in results:
        state = policy.advance(state, ok)
        statuses.append(state.status)
    assert statuses == reference(results, fail_at, pass_at)
