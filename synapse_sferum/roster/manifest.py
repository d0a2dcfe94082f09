"""Reads manifest.csv: the OneRoster version and whether each file is bulk, delta or absent.

The manifest is optional: without it (or without an entry for a file), a file that is there is
bulk, and the version follows from the files: a roles.csv means 1.2.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from sferum_shared.model import ImportMode
from sferum_shared.roster.csvfiles import ROSTER_FILES, decode, read_table
from sferum_shared.roster.problems import Problems
from synapse_sferum.roster import fields

MANIFEST = "manifest.csv"
DATA_FILES = tuple(file for file in ROSTER_FILES if file != MANIFEST)
VERSIONS = ("1.1", "1.2")

_mode = fields.choice({mode.value: mode for mode in ImportMode})


@attrs.frozen
class Manifest:
    version: str  # one of VERSIONS
    modes: Mapping[str, ImportMode]  # for each of DATA_FILES


@attrs.frozen
class _Entry:
    value: str
    line: int
    column: int


def read_manifest(files: Mapping[str, bytes], problems: Problems) -> Manifest:
    entries = _entries(files, problems)
    modes = {file: _file_mode(file, entries, files, problems) for file in DATA_FILES}
    version = entries.get("oneroster.version")
    if version is None:
        uses_roles = modes["roles.csv"] is not ImportMode.ABSENT
        return Manifest("1.2" if uses_roles else "1.1", modes)
    if version.value not in VERSIONS:
        problems.add(
            MANIFEST,
            version.line,
            version.column,
            f"oneroster.version {version.value!r} is not one of {', '.join(VERSIONS)}",
        )
    return Manifest(version.value, modes)


def _entries(files: Mapping[str, bytes], problems: Problems) -> dict[str, _Entry]:
    if MANIFEST not in files:
        return {}
    text = decode(MANIFEST, files[MANIFEST], problems)
    if text is None:
        return {}
    table = read_table(MANIFEST, text, ("propertyName", "value"), problems)
    if table is None:
        return {}
    value_column = table.columns["value"]
    name_column = table.columns["propertyName"]
    return {
        row.fields[name_column - 1].strip(): _Entry(
            row.fields[value_column - 1].strip(), row.line, value_column
        )
        for row in table.rows(problems)
    }


def _file_mode(
    file: str, entries: Mapping[str, _Entry], files: Mapping[str, bytes], problems: Problems
) -> ImportMode:
    """The manifest's word for `file`, checked against what is there."""
    key = f"file.{file.removesuffix('.csv')}"
    entry = entries.get(key)
    if entry is None:
        return ImportMode.BULK if file in files else ImportMode.ABSENT
    try:
        mode = _mode(entry.value)
    except ValueError as err:
        problems.add(MANIFEST, entry.line, entry.column, f"{key} {err}")
        return ImportMode.ABSENT
    if mode is not ImportMode.ABSENT and file not in files:
        problems.add(
            MANIFEST, entry.line, entry.column, f"{key} is {mode.value} but {file} is missing"
        )
    return mode
