"""Helpers shared by the tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLREG = str(Path(sys.executable).with_name("toolreg"))


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any registry settings of the caller, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOOLREG_", "POSTGRES_")) and k != "DATABASE_URL"
    }
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``toolreg`` as a real subprocess."""
    return subprocess.run(
        [TOOLREG, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
