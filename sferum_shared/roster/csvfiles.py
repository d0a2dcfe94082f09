"""Finds a roster's CSV files in a folder or a zip, decodes them and splits them into rows.

Only the container, the encoding and the CSV syntax are checked here; what the values mean is
`oneroster.py`'s business.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sferum_shared.roster.problems import Problems

if TYPE_CHECKING:
    from _csv import Reader

# The files this parser reads; any other file (courses, academicSessions, gradebook) is ignored.
ROSTER_FILES = (
    "manifest.csv",
    "orgs.csv",
    "users.csv",
    "roles.csv",
    "demographics.csv",
    "classes.csv",
    "enrollments.csv",
)
# Far above a large district's users.csv (~30 MB), far below what a zip bomb would inflate to.
MAX_FILE_BYTES = 256 * 1024 * 1024
# What reading a damaged member raises: RuntimeError if encrypted, NotImplementedError for an
# unknown compression method, the others for damaged data.
_UNREADABLE_MEMBER = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error)


def read_folder(folder: Path, problems: Problems) -> dict[str, bytes]:
    """The roster files in `folder` (or in its only sub-folder that has any), by file name."""
    paths = {
        path.relative_to(folder).as_posix(): path
        for pattern in ("*", "*/*")
        for path in folder.glob(pattern)
        if path.is_file()
    }
    chosen = _choose_files(folder.name, paths, problems)
    return {name: paths[path].read_bytes() for name, path in chosen.items()}


def read_zip(data: bytes, name: str, problems: Problems) -> dict[str, bytes]:
    """The roster files in the zip, at its root or inside its only sub-folder, by file name."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        problems.add(name, 0, 0, f"is not a readable zip file ({err})")
        return {}
    files: dict[str, bytes] = {}
    with archive:
        members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for file, path in _choose_files(name, members, problems).items():
            info = members[path]
            if info.file_size > MAX_FILE_BYTES:
                problems.add(file, 0, 0, f"is larger than {MAX_FILE_BYTES >> 20} MiB")
                continue
            try:
                files[file] = archive.read(info)
            except _UNREADABLE_MEMBER as err:
                problems.add(file, 0, 0, f"cannot be read from {name} ({err})")
    return files


def _choose_files(source: str, paths: Iterable[str], problems: Problems) -> dict[str, str]:
    """Maps each roster file name to its path: top-level files first, else one sub-folder's."""
    folders: dict[str, dict[str, str]] = {}
    for path in paths:
        folder, _, base = path.rpartition("/")
        if base.lower() in ROSTER_FILES:
            folders.setdefault(folder, {})[base.lower()] = path
    if "" in folders:
        return folders[""]
    if len(folders) == 1:
        return next(iter(folders.values()))
    if folders:
        problems.add(
            source,
            0,
            0,
            f"has roster files in several folders ({', '.join(sorted(folders))}); "
            "put them at the top level",
        )
    else:
        expected = ", ".join(ROSTER_FILES)
        problems.add(source, 0, 0, f"holds no roster file; expected some of {expected}")
    return {}


def decode(file: str, data: bytes, problems: Problems) -> str | None:
    """UTF-8 text (a BOM is dropped), or None with a problem at the first byte that is not UTF-8.

    The column is counted in characters, as an editor shows it.
    """
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = body.rfind(b"\n", 0, err.start) + 1
        line = body.count(b"\n", 0, err.start) + 1
        column = len(body[line_start : err.start].decode("utf-8")) + 1
        problems.add(
            file,
            line,
            column,
            f"is not UTF-8 (byte 0x{body[err.start]:02x}); save it as UTF-8, "
            "e.g. «CSV UTF-8» in Excel",
        )
        return None


class Row(NamedTuple):
    line: int  # 1-based; the header is line 1
    fields: list[str]


class Table:
    """A CSV file's header and a single pass over its data rows."""

    def __init__(self, file: str, names: Sequence[str], reader: Reader):
        self.file = file
        self.names = names  # the header, stripped
        self.columns = {name: number for number, name in enumerate(names, 1)}
        self._reader = reader
        self._width = len(names)

    def rows(self, problems: Problems) -> Iterator[Row]:
        """Rows with as many fields as the header; blank lines are skipped, others reported."""
        reader = self._reader
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                problems.add(self.file, line, 0, _csv_message(err))
                return  # the reader cannot find the next row boundary after this
            if not fields:
                continue
            if len(fields) != self._width:
                problems.add(
                    self.file,
                    line,
                    0,
                    f"has {len(fields)} fields but the header has {self._width}",
                )
                continue
            yield Row(line, fields)


def read_table(file: str, text: str, required: Sequence[str], problems: Problems) -> Table | None:
    """The table, or None (with problems) if the header is missing or lacks a required column.

    Columns are found by name, so their order and any extra columns (`metadata.*`) do not matter.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as err:
        problems.add(file, 1, 0, _csv_message(err))
        return None
    if not header:
        problems.add(file, 1, 0, "is empty; it needs a header row")
        return None
    names = [name.strip() for name in header]
    first: dict[str, int] = {}
    ok = True
    for number, name in enumerate(names, 1):
        if first.setdefault(name, number) != number:
            problems.add(file, 1, number, f"column {name!r} is already column {first[name]}")
            ok = False
    by_folded_name = {name.casefold(): name for name in names}
    for name in required:
        if name not in first:
            near = by_folded_name.get(name.casefold())
            hint = f" (there is {near!r}; names are case-sensitive)" if near else ""
            problems.add(file, 1, 0, f"has no column {name!r}, which is required{hint}")
            ok = False
    return Table(file, names, reader) if ok else None


def _csv_message(err: csv.Error) -> str:
    if "unexpected end of data" in str(err):
        return "a quoted field that starts here is never closed"
    return f"is not valid CSV: {err}"
