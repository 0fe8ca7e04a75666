"""A small typed reader over parsed TOML tables that reports errors the way installers need.

Every error names the file, the dotted key, the offending value and what is
allowed, in one line, so that ``lora-gateway config check`` and a failing start
say exactly what to fix. Unknown keys are errors too: a typo must not be
silently ignored on a box nobody will look at for months.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type, or out of range."""

    def __init__(self, source: str, key: str, value: object, allowed: str) -> None:
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"{source}: {key} = {shown}: {allowed}")
        self.source = source
        self.key = key
        self.allowed = allowed


class TableReader:
    """Reads typed values out of one TOML table and remembers which keys were used."""

    def __init__(self, data: dict[str, Any], path: str, source: str, base_dir: Path) -> None:
        self._data = data
        self._path = path
        self._source = source
        self._base_dir = base_dir
        self._used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def error(self, key: str, value: object, allowed: str) -> ConfigError:
        return ConfigError(self._source, self._key(key), value, allowed)

    def _get(self, key: str, default: Any, kind: str) -> Any:
        self._used.add(key)
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, value, f"required, {kind}")
            return default
        return value

    def string(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        choices: Sequence[str] | None = None,
        pattern: str | None = None,
        pattern_text: str = "",
    ) -> Any:
        kind = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a string"
        value = self._get(key, default, kind)
        if value is default and value is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, value, kind)
        if choices is not None and value not in choices:
            raise self.error(key, value, kind)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.error(key, value, pattern_text or f"must match {pattern}")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, low: int, high: int) -> Any:
        kind = f"an integer from {low} to {high}"
        value = self._get(key, default, kind)
        if value is default and value is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, value, kind)
        return value

    def number(self, key: str, default: Any = _MISSING, *, low: float, high: float) -> Any:
        kind = f"a number from {low:g} to {high:g}"
        value = self._get(key, default, kind)
        if value is default and value is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            low <= value <= high
        ):
            raise self.error(key, value, kind)
        return float(value)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            raise self.error(key, value, "true or false")
        return value

    def path(self, key: str, default: Any = _MISSING) -> Any:
        """A file path; relative paths are taken relative to the config file's folder."""
        value = self.string(key, default)
        if value is None:
            return None
        if value == "":
            raise self.error(key, value, "a non-empty path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    def list_of_strings(self, key: str) -> list[str]:
        value = self._get(key, [], "a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, value, "a list of strings")
        return value

    def table(self, key: str) -> TableReader:
        value = self._get(key, {}, "a table")
        if not isinstance(value, dict):
            raise self.error(key, value, "a table")
        return TableReader(value, self._key(key), self._source, self._base_dir)

    def tables(self, key: str) -> list[TableReader]:
        value = self._get(key, [], "an array of tables")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, value, "an array of tables ([[...]])")
        return [
            TableReader(v, f"{self._key(key)}[{i}]", self._source, self._base_dir)
            for i, v in enumerate(value)
        ]

    def finish(self) -> None:
        """Refuse keys nobody read: almost always a typo."""
        for key, value in self._data.items():
            if key not in self._used:
                known = ", ".join(sorted(self._used)) or "none"
                raise self.error(key, value, f"unknown key (known here: {known})")
