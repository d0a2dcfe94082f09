"""`sferumctl backup DIR OUT` and `sferumctl restore OUT DIR`: a copy of a running deployment
that can become a new one.

A backup is a folder: `files/` holds the deployment's files at their paths inside it (configs,
secrets, init parameters, signing key, media, and consistent copies of its SQLite databases),
`postgresql.dump` holds `pg_dump -Fc` of a PostgreSQL database, and `manifest.json`, written
last, lists every file with its size and sha256. A folder without the manifest is a backup that
did not finish; `restore` checks every file against it before it writes anything.

The databases are copied before the files: Synapse writes a media file before the row naming
it, so every upload the copied database knows of is whole on disk by then.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from sferum_shared import Clock
from synapse_sferum.ctl.deploy import init
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.params import InitParams, postgres_args

FORMAT = "sferum-backup"
VERSION = 1
MANIFEST = "manifest.json"
FILES = "files"  # the deployment's files, at their paths inside the deployment
PG_DUMP = "postgresql.dump"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DATABASE_KINDS = {"sqlite3": SQLITE, "psycopg2": POSTGRESQL}  # Synapse's `database: name:`

# What a running deployment has that a copy must not: its logs and its processes' PID files.
SKIPPED_FOLDERS = ("logs", "run")
# SQLite's side files: the online backup reads the database through them.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
SQLITE_HEADER = b"SQLite format 3\x00"
# Synapse's connection-pool settings in `database: args:`, which are not libpq's.
POOL_ARGS = ("cp_min", "cp_max", "cp_reconnect", "cp_noisy", "cp_openfun")
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
HASH_CHUNK = 1 << 20


# -- the manifest ----------------------------------------------------------------------------


@attrs.frozen
class FileEntry:
    """One file of a backup: its path inside OUT (with `/`), size and sha256."""

    path: str
    size: int
    sha256: str


@attrs.frozen
class Manifest:
    server_name: str
    database: str  # SQLITE or POSTGRESQL
    created: str  # ISO 8601, from the injectable clock
    files: tuple[FileEntry, ...]
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "server_name": self.server_name,
            "database": self.database,
            "created": self.created,
            "files": [attrs.asdict(entry) for entry in self.files],
        }


def parse_manifest(raw: object) -> Manifest:
    """A manifest read back; a ValueError names the key that is wrong and what it must be."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f'not a manifest of sferumctl backup (no "format": "{FORMAT}")')
    if raw.get("version") != VERSION:
        raise ValueError(
            f"version: this sferumctl reads backups of version {VERSION}, "
            f"got {raw.get('version')!r}"
        )
    for key in ("server_name", "created"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"{key}: must be a non-empty string, got {raw.get(key)!r}")
    if raw.get("database") not in (SQLITE, POSTGRESQL):
        raise ValueError(
            f"database: must be {SQLITE!r} or {POSTGRESQL!r}, got {raw.get('database')!r}"
        )
    files = raw.get("files")
    if not isinstance(files, list):
        raise ValueError(f"files: must be a list, got {files!r}")
    entries = tuple(_file_entry(n, item) for n, item in enumerate(files))
    if raw["database"] == POSTGRESQL and PG_DUMP not in {e.path for e in entries}:
        raise ValueError(f"files: a PostgreSQL backup must list {PG_DUMP}")
    return Manifest(raw["server_name"], raw["database"], raw["created"], entries)


def _file_entry(n: int, item: object) -> FileEntry:
    where = f"files[{n}]"
    if not isinstance(item, dict) or set(item) != {"path", "size", "sha256"}:
        raise ValueError(f"{where}: must be {{path, size, sha256}}, got {item!r}")
    path, size, digest = item["path"], item["size"], item["sha256"]
    if not isinstance(path, str) or not _inside(path):
        raise ValueError(f"{where}: path: must be a relative path inside the backup, got {path!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{where}: size: must be a whole number of bytes, got {size!r}")
    if not isinstance(digest, str) or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
        raise ValueError(f"{where}: sha256: must be 64 hex digits, got {digest!r}")
    return FileEntry(path, size, digest)


def _inside(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def check_files(listed: Iterable[FileEntry], found: Mapping[str, FileEntry]) -> list[str]:
    """What is wrong with the files `found` in a backup (by path) against its manifest."""
    problems = []
    expected = {entry.path: entry for entry in listed}
    for path, entry in sorted(expected.items()):
        got = found.get(path)
        if got is None:
            problems.append(f"{path}: missing")
        elif got.size != entry.size:
            problems.append(f"{path}: {got.size} bytes, the manifest says {entry.size}")
        elif got.sha256 != entry.sha256:
            problems.append(f"{path}: its sha256 is not the manifest's (the file changed)")
    problems += [f"{path}: not in the manifest" for path in sorted(set(found) - set(expected))]
    return problems


# -- what a backup takes ---------------------------------------------------------------------


def backup_plan(paths: Iterable[str], sqlite: set[str]) -> list[tuple[str, str]]:
    """(path, how) for each file of a deployment (paths inside it, with `/`) to back up: "sqlite"
    (the online backup API) for the SQLite databases among them, "copy" for the rest.

    Logs and run/ are the running server's, and a database's side files are read through it.
    """
    side_files = {db + suffix for db in sqlite for suffix in SQLITE_SIDE_FILES}
    plan = []
    for path in sorted(paths):
        if PurePosixPath(path).parts[0] in SKIPPED_FOLDERS or path in side_files:
            continue
        plan.append((path, SQLITE if path in sqlite else "copy"))
    return plan


def database_kind(config: Mapping[str, Any]) -> str:
    name = (config.get("database") or {}).get("name")
    if name not in DATABASE_KINDS:
        raise CtlError(f"database: name: must be one of {', '.join(DATABASE_KINDS)}, got {name!r}")
    return DATABASE_KINDS[name]


def outside_data(root: Path, config: Mapping[str, Any]) -> list[str]:
    """The config's data paths (SQLite database, media store) that are not in the folder: a
    backup of the folder would silently miss them."""
    database = config.get("database") or {}
    paths = {"media_store_path": config.get("media_store_path")}
    if database.get("name") == "sqlite3":
        paths["database: args: database"] = (database.get("args") or {}).get("database")
    return [
        f"{key}: {value}"
        for key, value in paths.items()
        if isinstance(value, str) and not Path(value).absolute().is_relative_to(root)
    ]


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_connection(args: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """A libpq connection string for pg_dump/pg_restore from Synapse's psycopg2 `args`, and the
    environment that carries the password (never on a command line, where `ps` shows it)."""
    words, env = [], {}
    for key, value in args.items():
        if key in POOL_ARGS:
            continue
        if key == "password":
            env["PGPASSWORD"] = str(value)
            continue
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        words.append(f"{'dbname' if key == 'database' else key}='{text}'")
    return " ".join(words), env


def pg_tool(name: str, on_path: str | None, installed: Iterable[str]) -> str:
    """The PostgreSQL client tool to run: the one on PATH, else the newest installed version's
    (a newer pg_dump reads older servers, never the other way round)."""
    if on_path:
        return on_path
    versions = [Path(folder) / name for folder in installed]
    found = [tool for tool in versions if tool.parent.parent.name.isdigit()]
    if not found:
        raise CtlError(
            f"{name} is not on PATH nor in {PG_BIN_GLOB}: install PostgreSQL's client tools "
            "(Debian: apt-get install postgresql-client)"
        )
    return str(max(found, key=lambda tool: int(tool.parent.parent.name)))


def _pg_tool(name: str) -> str:
    installed = [f for f in glob.glob(PG_BIN_GLOB) if (Path(f) / name).is_file()]
    return pg_tool(name, shutil.which(name), installed)


def _run_pg(argv: list[str], env: Mapping[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, env={**os.environ, **env}, capture_output=True, text=True, check=False
        )
    except OSError as e:
        raise CtlError(f"{what}: cannot run {argv[0]}: {e}") from None
    if done.returncode != 0:
        raise CtlError(
            f"{what}: {Path(argv[0]).name} exited {done.returncode}",
            details=done.stderr.strip().splitlines(),
        )


def _where(args: Mapping[str, Any]) -> str:
    """A database named without its password."""
    name = args.get("dbname") or args.get("database")
    return f"the database {name} at {args.get('host')}:{args.get('port')}"


def _database_args(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict((config.get("database") or {}).get("args") or {})


def _is_empty_database(args: Mapping[str, Any]) -> bool:
    import psycopg2  # only PostgreSQL deployments need it (Synapse's own extra brings it)

    libpq = {k: v for k, v in args.items() if k not in POOL_ARGS}
    try:
        with contextlib.closing(psycopg2.connect(**libpq)) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg_toast%'"
            )
            (count,) = cursor.fetchone() or (0,)
    except psycopg2.Error as e:
        raise CtlError(f"cannot connect to {_where(args)}: {str(e).strip()}") from None
    return int(count) == 0


# -- backup ----------------------------------------------------------------------------------


def backup(deployment: Deployment, out: Path, clock: Clock) -> list[str]:
    """Writes a backup of the (possibly running) deployment into the new folder `out`."""
    config = deployment.load_config()
    kind = database_kind(config)
    outside = outside_data(deployment.root, config)
    if outside:
        raise CtlError(
            f"{deployment.root}: data outside the folder, which a backup would miss",
            details=outside,
        )
    if out.absolute().is_relative_to(deployment.root):
        raise CtlError(f"{out} is inside {deployment.root}: put the backup somewhere else")
    _refuse_non_empty(out, "a backup is never written over another one")
    pg_dump = _pg_tool("pg_dump") if kind == POSTGRESQL else ""
    paths = _deployment_files(deployment.root)
    sqlite = {p for p in paths if _is_sqlite(deployment.root / p)}
    plan = backup_plan(paths, sqlite)

    made = not out.exists()
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the secrets
        written = _write_files(deployment.root, out, plan, _database_args(config), pg_dump)
        files = tuple(_entry(out, path) for path in written)
        created = clock.now().isoformat(timespec="seconds")
        _write_manifest(out, Manifest(str(config.get("server_name")), kind, created, files))
    except BaseException as e:
        _remove_contents(out, remove_folder=made)  # nothing half-written stays behind
        if isinstance(e, OSError):
            raise CtlError(f"cannot write the backup into {out}: {e}") from None
        raise
    size = sum(entry.size for entry in files)
    databases = [PG_DUMP] if kind == POSTGRESQL else sorted(sqlite)
    return [
        f"database  {kind}: {', '.join(databases)}",
        f"files     {len(files)} ({size} bytes)",
        f"wrote     {out / MANIFEST}",
    ]


def _write_files(
    root: Path, out: Path, plan: list[tuple[str, str]], pg_args: Mapping[str, Any], pg_dump: str
) -> list[str]:
    """The databases, then the files (see the module's docstring); the paths written in OUT."""
    written = []
    if pg_dump:
        conninfo, env = pg_connection(pg_args)
        argv = [pg_dump, "--format=custom", "--no-password", f"--file={out / PG_DUMP}"]
        _run_pg([*argv, f"--dbname={conninfo}"], env, "pg_dump")
        written.append(PG_DUMP)
    for path, how in sorted(plan, key=lambda step: step[1] != SQLITE):
        source, dest = root / path, out / FILES / path
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _copy_sqlite(source, dest) if how == SQLITE else shutil.copy2(source, dest)
        except FileNotFoundError:
            continue  # removed since it was listed (a temporary file, a deleted upload)
        written.append(f"{FILES}/{path}")
    return written


def _refuse_non_empty(folder: Path, why: str) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CtlError(f"{folder} exists and is not an empty folder; {why}")


def _deployment_files(root: Path) -> list[str]:
    """Every regular file under `root` (symlinks are not followed), as paths with `/`."""
    found = []
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        if here == root:
            subfolders[:] = [s for s in subfolders if s not in SKIPPED_FOLDERS]
        found += [
            (here / name).relative_to(root).as_posix()
            for name in names
            if (here / name).is_file() and not (here / name).is_symlink()
        ]
    return found


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _copy_sqlite(source: Path, dest: Path) -> None:
    """A consistent copy of a database other processes keep writing: SQLite's online backup,
    in one step so that it copies one moment's pages."""
    if not source.exists():
        raise FileNotFoundError(source)
    try:
        with (
            contextlib.closing(sqlite3.connect(source, timeout=60)) as src,
            contextlib.closing(sqlite3.connect(dest)) as copy,
        ):
            src.backup(copy)
    except sqlite3.Error as e:
        raise CtlError(f"{source}: cannot copy the SQLite database: {e}") from None
    shutil.copymode(source, dest)


def _entry(out: Path, path: str) -> FileEntry:
    digest = hashlib.sha256()
    with (out / path).open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return FileEntry(path, (out / path).stat().st_size, digest.hexdigest())


def _write_manifest(out: Path, manifest: Manifest) -> None:
    """The manifest, last and atomically: its presence says the backup is whole."""
    tmp = out / f".{MANIFEST}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(manifest.to_json(), f, indent=1, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / MANIFEST)


# -- restore ---------------------------------------------------------------------------------


def restore_database(
    kind: str, given: str | None, original: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """Where a backup's database goes: None for SQLite (its file comes back with the folder),
    else the psycopg2 args of the given PostgreSQL URL or of the original database."""
    if kind == SQLITE:
        if given not in (None, SQLITE):
            raise CtlError(
                "a SQLite backup restores onto SQLite (move it to PostgreSQL afterwards with "
                "Synapse's synapse_port_db); leave out --database"
            )
        return None
    if given == SQLITE:
        raise CtlError(
            "a PostgreSQL backup restores into PostgreSQL: give --database "
            "postgresql://user:password@host:port/dbname of an empty database"
        )
    if given is None:
        return original
    try:
        return postgres_args(given)
    except ValueError as e:
        raise CtlError(f"--database: {e}") from None


def restore(out: Path, deployment: Deployment, given: InitParams) -> list[str]:
    """Makes the new deployment `deployment` from the backup in `out`, with the init parameters
    `given` (a new port, database...; never a new server name) over the stored ones; nothing is
    written unless the backup is whole and the targets are empty."""
    manifest = read_backup(out)
    _refuse_non_empty(deployment.root, "restore makes a new deployment folder")
    original = _database_args(Deployment(out / FILES).load_config())
    target = restore_database(manifest.database, given.database, original)
    pg_restore = ""
    if target is not None:
        pg_restore = _pg_tool("pg_restore")
        if not _is_empty_database(target):
            raise CtlError(
                f"{_where(target)} is not empty; restore goes into an "
                "empty one only (create it with: CREATE DATABASE name ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0)"
            )

    created = not deployment.root.exists()
    try:
        deployment.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        restored = _copy_back(out, manifest, deployment.root)
        if target is not None:
            conninfo, env = pg_connection(target)
            argv = [pg_restore, "--no-password", "--no-owner", "--no-privileges"]
            argv += ["--exit-on-error", "--single-transaction", f"--dbname={conninfo}"]
            _run_pg([*argv, str(out / PG_DUMP)], env, "pg_restore")
        report = init(deployment, given)
    except BaseException:
        _remove_contents(deployment.root, remove_folder=created)
        raise
    return [f"restored  {restored} files of {manifest.server_name} ({manifest.created})", *report]


def read_backup(out: Path) -> Manifest:
    """The backup's manifest, once every file in `out` matches it."""
    if not out.is_dir():
        raise CtlError(f"{out} is not a folder")
    try:
        raw = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CtlError(
            f"{out} has no {MANIFEST}: the backup did not finish (the manifest is written last)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CtlError(f"{out / MANIFEST}: cannot read: {e}") from None
    try:
        manifest = parse_manifest(raw)
    except ValueError as e:
        raise CtlError(f"{out / MANIFEST}: {e}") from None
    found = {
        path: _entry(out, path)
        for path in (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        if path != MANIFEST
    }
    problems = check_files(manifest.files, found)
    if problems:
        raise CtlError(
            f"{out} does not match its manifest; nothing was restored", details=problems
        )
    return manifest


def _copy_back(out: Path, manifest: Manifest, root: Path) -> int:
    count = 0
    for entry in manifest.files:
        relative = PurePosixPath(entry.path)
        if relative.parts[0] != FILES:
            continue
        dest = root.joinpath(*relative.parts[1:])
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(out / entry.path, dest)
        count += 1
    return count


def _remove_contents(folder: Path, *, remove_folder: bool) -> None:
    """Undoes a restore that failed half-way: the folder was new or empty before it."""
    if remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
