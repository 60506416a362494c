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


def test_every_exception_of_the_package_is_in_the_one_tree() -> None:
    """No module defines a public exception of its own: each lives in errors.py, drawn
    and exported (private signals inside a module, named ``_...``, aside)."""
    import importlib
    import pkgutil

    import omninode_bridge

    strays = []
    for info in pkgutil.walk_packages(omninode_bridge.__path__, "omninode_bridge."):
        if ".migrations.versions." in info.name or info.name.endswith(".migrations.env"):
            continue  # Alembic scripts: they run inside Alembic, not on import
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
                and module is not errors
            ):
                strays.append(f"{module.__name__}.{name}")
    assert strays == []
