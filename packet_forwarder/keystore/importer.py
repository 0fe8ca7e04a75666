"""Read device keys from CSV or JSON files for ``lora-gateway keys import``.

Every row is validated before anything is written, and every bad row is reported with
its line number; one bad row means nothing is imported, so a half-applied file never
leaves the gateway with a mix of old and new sessions.

CSV: a header row naming the columns (``dev_eui,dev_addr,mac_version,...``), one device
per line. JSON: an array of objects with the same names; a row's line number is where
its object starts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packet_forwarder.keystore.errors import ImportFileError, RecordError
from packet_forwarder.keystore.records import DeviceSession, RootKey, records_from_fields

ImportFormat = Literal["csv", "json"]


@dataclass(frozen=True, slots=True)
class ImportRows:
    sessions: list[DeviceSession]
    roots: list[RootKey]


def guess_format(path: Path) -> ImportFormat:
    return "json" if path.suffix.lower() == ".json" else "csv"


def read_import_file(path: Path, fmt: ImportFormat | None = None) -> ImportRows:
    """Parse and validate the whole file; raises ``ImportFileError`` listing bad rows."""
    text = path.read_text(encoding="utf-8-sig")
    rows = _json_rows(text) if (fmt or guess_format(path)) == "json" else _csv_rows(text)
    return validate_rows(rows)


def validate_rows(rows: list[tuple[int, object]]) -> ImportRows:
    """Validate numbered rows; duplicates of a DevEUI within one file are errors too."""
    errors: list[RecordError] = []
    result = ImportRows([], [])
    seen: dict[tuple[str, str], int] = {}
    for line, raw in rows:
        if isinstance(raw, RecordError):
            errors.append(raw.at_line(line))
            continue
        if not isinstance(raw, dict):
            errors.append(RecordError("row", "must be an object", line))
            continue
        try:
            session, root = records_from_fields(raw)
        except RecordError as exc:
            errors.append(exc.at_line(line))
            continue
        for kind, record in (("session", session), ("root", root)):
            if record is None:
                continue
            first = seen.setdefault((kind, record.dev_eui), line)
            if first != line:
                message = f"{record.dev_eui} also on line {first}"
                errors.append(RecordError("dev_eui", message, line))
        if session is not None:
            result.sessions.append(session)
        if root is not None:
            result.roots.append(root)
    if errors:
        raise ImportFileError(errors)
    return result


def _csv_rows(text: str) -> list[tuple[int, object]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[tuple[int, object]] = []
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                continue
            if len(record) != len(header):
                rows.append((line, RecordError(
                    "row", f"{len(record)} cells for {len(header)} columns")))
                continue
            rows.append((line, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise ImportFileError([RecordError("csv", str(exc), reader.line_num)]) from exc
    return rows


def _json_rows(text: str) -> list[tuple[int, object]]:
    """Decode the top-level array element by element, to know where each one starts."""
    decoder = json.JSONDecoder()
    try:
        start = _skip_ws(text, 0)
        if not text.startswith("[", start):
            raise ImportFileError([RecordError("json", "expected an array of objects", 1)])
        rows: list[tuple[int, object]] = []
        pos = _skip_ws(text, start + 1)
        while not text.startswith("]", pos):
            value, end = decoder.raw_decode(text, pos)
            rows.append((text.count("\n", 0, pos) + 1, value))
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif not text.startswith("]", pos):
                raise json.JSONDecodeError("expected ',' or ']'", text, pos)
    except json.JSONDecodeError as exc:
        raise ImportFileError([RecordError("json", exc.msg, exc.lineno)]) from exc
    return rows


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
