"""The exception tree: one root, messages that name what went wrong."""

from __future__ import annotations

import inspect

from omninode_bridge import errors


def test_every_error_derives_from_the_root() -> None:
    classes = [
        obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, Exception)
    ]
    assert len(classes) == len(errors.__all__)
    for cls in classes:
        assert issubclass(cls, errors.OmniNodeBridgeError), cls


def test_every_error_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def test_duplicate_names_the_ids() -> None:
    exc = errors.ToolAlreadyRegisteredError(["a-tool", "b-tool"])
    assert "'a-tool'" in str(exc)
    assert "'b-tool'" in str(exc)
    assert exc.tool_ids == ["a-tool", "b-tool"]


def test_validation_error_lists_each_field() -> None:
    exc = errors.ValidationFailedError([("endpoints.stamp", "bad URL"), ("tool_id", "too long")])
    assert "endpoints.stamp" in str(exc)
    assert "tool_id" in str(exc)
    assert isinstance(exc, ValueError)
