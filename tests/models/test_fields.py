"""check_unicode: the rule the query model and the console share for free text."""

from __future__ import annotations

import pytest

from omninode_bridge.models.fields import check_unicode


def test_valid_text_is_returned_unchanged() -> None:
    assert check_unicode("héllo ✓") == "héllo ✓"


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="no lone surrogates"):
        check_unicode("a\ud800b")
