"""User-facing errors: each names the file, row and field at fault so the CLI can print it plainly."""

from __future__ import annotations

from pathlib import Path


class CrossrecError(Exception):
    """An error caused by the user's input or configuration, printed without a traceback."""


class DataError(CrossrecError):
    """Bad input data, located as precisely as we can: file, row (1-based, as an editor shows it), field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(CrossrecError, ValueError):
    """A configuration value that cannot be used (a ValueError too: a bad argument value)."""
