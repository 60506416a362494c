"""Alembic migrations for the registry schema (plain SQL inside each revision).

``HEAD_REVISION`` is the revision this code expects; a test checks that it is
Alembic's head, so a new revision cannot land without the code knowing it.
"""

from __future__ import annotations

HEAD_REVISION = "0006"
# Key of the advisory lock that serializes migrations across processes.
MIGRATION_LOCK_KEY = 0x746F6F6C_72656730  # "toolreg0"

__all__ = ["HEAD_REVISION", "MIGRATION_LOCK_KEY"]
