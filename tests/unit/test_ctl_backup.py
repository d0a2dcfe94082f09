"""`sferumctl backup` and `restore`: what a backup takes, its manifest and how it is checked,
where a database is restored to; and the refusals, on real folders (no server needed)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sferum_shared import Clock
from synapse_sferum.ctl.backup import (
    FileEntry,
    Manifest,
    backup,
    backup_plan,
    check_files,
    outside_data,
    parse_manifest,
    pg_connection,
    pg_tool,
    restore_database,
)
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main

SERVER = "school1.example.org"
SHA = "ab" * 32
OTHER_SHA = "cd" * 32


# -- what a backup takes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "sqlite", "plan"),
    [
        (
            ["homeserver.yaml", "homeserver.db", "homeserver.db-wal", "homeserver.db-shm"],
            {"homeserver.db"},
            [("homeserver.db", "sqlite"), ("homeserver.yaml", "copy")],
        ),
        (  # the running server's logs and PID files are not the deployment's
            ["logs/homeserver.log", "run/synapse.pid", "conf.d/50-tests.yaml"],
            set(),
            [("conf.d/50-tests.yaml", "copy")],
        ),
        (  # only the top-level folders: an upload may be called anything
            ["media_store/logs/x", "media_store/run"],
            set(),
            [("media_store/logs/x", "copy"), ("media_store/run", "copy")],
        ),
        (  # a side file's name alone does not make it one: its database must be there
            ["diary.db", "diary.db-journal", "notes-wal"],
            {"diary.db"},
            [("diary.db", "sqlite"), ("notes-wal", "copy")],
        ),
        (  # files a later version renders (workers, nginx) are taken as they come
            ["nginx.conf", "workers/w1.yaml", "x.signing.key"],
            set(),
            [("nginx.conf", "copy"), ("workers/w1.yaml", "copy"), ("x.signing.key", "copy")],
        ),
    ],
)
def test_backup_plan(paths: list[str], sqlite: set[str], plan: list[tuple[str, str]]) -> None:
    assert backup_plan(paths, sqlite) == plan


ROOT = Path("/srv/school")


@pytest.mark.parametrize(
    ("config", "outside"),
    [
        (
            {
                "media_store_path": "/srv/school/media_store",
                "database": {"name": "sqlite3", "args": {"database": "/srv/school/homeserver.db"}},
            },
            [],
        ),
        (
            {
                "media_store_path": "/mnt/media",
                "database": {"name": "sqlite3", "args": {"database": "/var/lib/hs.db"}},
            },
            ["media_store_path: /mnt/media", "database: args: database: /var/lib/hs.db"],
        ),
        (  # PostgreSQL's `database` arg is a name, not a path
            {
                "media_store_path": "/srv/school/media_store",
                "database": {"name": "psycopg2", "args": {"database": "synapse"}},
            },
            [],
        ),
        ({"media_store_path": "/srv/schoolX/media"}, ["media_store_path: /srv/schoolX/media"]),
    ],
)
def test_data_outside_the_folder(config: dict[str, Any], outside: list[str]) -> None:
    assert outside_data(ROOT, config) == outside


# -- the manifest ----------------------------------------------------------------------------

MANIFEST = Manifest(
    SERVER,
    "postgresql",
    "2026-12-08T00:00:00+00:00",
    (FileEntry("postgresql.dump", 10, SHA), FileEntry("files/homeserver.yaml", 3, OTHER_SHA)),
)


def test_a_manifest_reads_back_as_written() -> None:
    assert parse_manifest(json.loads(json.dumps(MANIFEST.to_json()))) == MANIFEST


def _changed(**changes: Any) -> dict[str, Any]:
    return {**MANIFEST.to_json(), **changes}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([], "not a manifest of sferumctl backup"),
        (_changed(format="zip"), "not a manifest of sferumctl backup"),
        (_changed(version=2), "version: this sferumctl reads backups of version 1, got 2"),
        (_changed(server_name=""), "server_name: must be a non-empty string"),
        (_changed(created=None), "created: must be a non-empty string"),
        (_changed(database="mysql"), "database: must be 'sqlite' or 'postgresql', got 'mysql'"),
        (_changed(files={}), "files: must be a list"),
        (_changed(files=[{"path": "x"}]), "files[0]: must be {path, size, sha256}"),
        (
            _changed(files=[{"path": "../secrets.yaml", "size": 1, "sha256": SHA}]),
            "files[0]: path: must be a relative path inside the backup",
        ),
        (
            _changed(files=[{"path": "/etc/passwd", "size": 1, "sha256": SHA}]),
            "files[0]: path: must be a relative path inside the backup",
        ),
        (
            _changed(files=[{"path": "a", "size": True, "sha256": SHA}]),
            "files[0]: size: must be a whole number of bytes",
        ),
        (
            _changed(files=[{"path": "a", "size": -1, "sha256": SHA}]),
            "files[0]: size: must be a whole number of bytes",
        ),
        (
            _changed(files=[{"path": "a", "size": 1, "sha256": SHA.upper()}]),
            "files[0]: sha256: must be 64 hex digits",
        ),
        (_changed(files=[]), "files: a PostgreSQL backup must list postgresql.dump"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_key(raw: object, error: str) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("[", r"\[").replace("(", r"\(")):
        parse_manifest(raw)


LISTED = (FileEntry("files/a", 1, SHA), FileEntry("files/b", 2, SHA))


@pytest.mark.parametrize(
    ("found", "problems"),
    [
        ({"files/a": FileEntry("files/a", 1, SHA), "files/b": FileEntry("files/b", 2, SHA)}, []),
        ({"files/a": FileEntry("files/a", 1, SHA)}, ["files/b: missing"]),
        (
            {"files/a": FileEntry("files/a", 0, SHA), "files/b": FileEntry("files/b", 2, SHA)},
            ["files/a: 0 bytes, the manifest says 1"],
        ),
        (
            {
                "files/a": FileEntry("files/a", 1, SHA),
                "files/b": FileEntry("files/b", 2, OTHER_SHA),
            },
            ["files/b: its sha256 is not the manifest's (the file changed)"],
        ),
        (
            {
                "files/a": FileEntry("files/a", 1, SHA),
                "files/b": FileEntry("files/b", 2, SHA),
                "files/c": FileEntry("files/c", 2, SHA),
            },
            ["files/c: not in the manifest"],
        ),
    ],
)
def test_files_checked_against_the_manifest(
    found: dict[str, FileEntry], problems: list[str]
) -> None:
    assert check_files(LISTED, found) == problems


# -- databases -------------------------------------------------------------------------------

ORIGINAL = {"user": "synapse", "dbname": "school", "host": "db", "port": 5432}


@pytest.mark.parametrize(
    ("kind", "given", "target"),
    [
        ("sqlite", None, None),
        ("sqlite", "sqlite", None),
        ("sqlite", "postgresql://u@h/d", "a SQLite backup restores onto SQLite"),
        ("postgresql", None, ORIGINAL),
        (
            "postgresql",
            "postgresql://u:p%40ss@h:6432/new",
            {"user": "u", "password": "p@ss", "dbname": "new", "host": "h", "port": 6432},
        ),
        ("postgresql", "sqlite", "a PostgreSQL backup restores into PostgreSQL"),
        ("postgresql", "mysql://h/d", "--database: expected 'sqlite' or postgresql://"),
    ],
)
def test_where_the_database_is_restored(kind: str, given: str | None, target: object) -> None:
    if isinstance(target, str):
        with pytest.raises(CtlError, match="^" + target.replace("(", r"\(")):
            restore_database(kind, given, ORIGINAL)
    else:
        assert restore_database(kind, given, ORIGINAL) == target


@pytest.mark.parametrize(
    ("args", "conninfo", "env"),
    [
        (ORIGINAL, "user='synapse' dbname='school' host='db' port='5432'", {}),
        (  # the password goes in the environment; the pool's settings are Synapse's own
            {"user": "u", "password": "s3cret", "database": "d", "cp_min": 5, "cp_max": 10},
            "user='u' dbname='d'",
            {"PGPASSWORD": "s3cret"},
        ),
        ({"dbname": "it's\\here"}, "dbname='it\\'s\\\\here'", {}),
    ],
)
def test_pg_connection(args: dict[str, Any], conninfo: str, env: dict[str, str]) -> None:
    assert pg_connection(args) == (conninfo, env)


@pytest.mark.parametrize(
    ("on_path", "installed", "tool"),
    [
        ("/usr/bin/pg_dump", ["/usr/lib/postgresql/15/bin"], "/usr/bin/pg_dump"),
        (
            None,
            [
                "/usr/lib/postgresql/9/bin",
                "/usr/lib/postgresql/16/bin",
                "/usr/lib/postgresql/15/bin",
            ],
            "/usr/lib/postgresql/16/bin/pg_dump",
        ),
        (None, [], "pg_dump is not on PATH nor in /usr/lib/postgresql/*/bin"),
    ],
)
def test_which_pg_dump(on_path: str | None, installed: list[str], tool: str) -> None:
    if tool.startswith("/"):
        assert pg_tool("pg_dump", on_path, installed) == tool
    else:
        with pytest.raises(CtlError, match=tool.replace("*", r"\*")):
            pg_tool("pg_dump", on_path, installed)


# -- on real folders -------------------------------------------------------------------------

MOMENT = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """An initialised folder whose database (WAL mode, like Synapse's) has a committed row
    still in its write-ahead log, held open as a running server holds it; and an upload."""
    folder = tmp_path / "school"
    assert main(["init", str(folder), "--server-name", SERVER, "--http-port", "18555"]) == 0
    db = sqlite3.connect(folder / "homeserver.db")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("CREATE TABLE events (body TEXT)")
    db.execute("INSERT INTO events VALUES ('Привет')")
    db.commit()
    (folder / "media_store" / "local_content" / "ab").mkdir(parents=True)
    (folder / "media_store" / "local_content" / "ab" / "cdef").write_bytes(b"an essay")
    (folder / "logs" / "homeserver.log").write_text("not backed up\n")
    try:
        yield Deployment(folder)
    finally:
        db.close()


@pytest.fixture
def made(deployment: Deployment, tmp_path: Path) -> Path:
    out = tmp_path / "backup"
    backup(deployment, out, Clock.fixed(MOMENT))
    return out


def test_backup_copies_a_live_database_and_the_files_and_writes_the_manifest(
    deployment: Deployment, made: Path
) -> None:
    manifest = json.loads((made / "manifest.json").read_text())
    assert (manifest["server_name"], manifest["database"]) == (SERVER, "sqlite")
    assert manifest["created"] == "2026-12-08T01:02:03+00:00"
    paths = {entry["path"] for entry in manifest["files"]}
    assert {
        "files/homeserver.db",
        "files/homeserver.yaml",
        "files/secrets.yaml",
        "files/sferum-init.yaml",
        f"files/{SERVER}.signing.key",
        "files/media_store/local_content/ab/cdef",
    } <= paths
    assert not [p for p in paths if p.startswith("files/logs/") or p.endswith(("-wal", "-shm"))]
    assert (deployment.root / "homeserver.db-wal").stat().st_size > 0  # the row is there only
    with sqlite3.connect(made / "files" / "homeserver.db") as copy:
        assert copy.execute("SELECT body FROM events").fetchall() == [("Привет",)]


def test_restore_makes_the_same_server_in_a_new_folder_on_a_new_port(
    deployment: Deployment, made: Path, tmp_path: Path
) -> None:
    new = tmp_path / "restored"
    assert main(["restore", str(made), str(new), "--port", "18666"]) == 0
    config = yaml.safe_load((new / "homeserver.yaml").read_text())
    assert config["server_name"] == SERVER
    assert config["listeners"][0]["port"] == 18666
    assert config["media_store_path"] == str(new / "media_store")
    for kept in ("secrets.yaml", f"{SERVER}.signing.key", "media_store/local_content/ab/cdef"):
        assert (new / kept).read_bytes() == (deployment.root / kept).read_bytes(), kept
    with sqlite3.connect(new / "homeserver.db") as copy:
        assert copy.execute("SELECT body FROM events").fetchall() == [("Привет",)]
    assert yaml.safe_load((new / "sferum-init.yaml").read_text())["http_port"] == 18666


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_backup_refuses_a_non_empty_out(
    deployment: Deployment, made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (made / "manifest.json").read_bytes()
    err = _refused(["backup", str(deployment.root), str(made)], capsys)
    assert f"{made} exists and is not an empty folder" in err
    assert (made / "manifest.json").read_bytes() == before


def test_backup_refuses_to_write_into_the_deployment(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The next backup would take this one along, and so on."""
    out = deployment.root / "media_store" / "backup"
    err = _refused(["backup", str(deployment.root), str(out)], capsys)
    assert f"{out} is inside {deployment.root}" in err
    assert not out.exists()


def test_backup_refuses_a_folder_that_is_no_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["backup", str(tmp_path), str(tmp_path / "out")], capsys)
    assert "is not a deployment (no homeserver.yaml)" in err
    assert not (tmp_path / "out").exists()


def test_a_failed_backup_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pg_dump cannot reach the database (nothing listens on port 1): no half backup stays."""
    folder, out = tmp_path / "school", tmp_path / "backup"
    database = "postgresql://synapse:pw@127.0.0.1:1/school"
    assert main(["init", str(folder), "--server-name", SERVER, "--database", database]) == 0
    err = _refused(["backup", str(folder), str(out)], capsys)
    assert "backup: pg_dump: pg_dump exited 1" in err and "127.0.0.1" in err
    assert not out.exists()


def _corrupt(made: Path) -> None:
    secrets = made / "files" / "secrets.yaml"
    data = bytearray(secrets.read_bytes())
    data[-2] ^= 1
    secrets.write_bytes(bytes(data))


def _truncate(made: Path) -> None:
    (made / "files" / "homeserver.db").write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (_corrupt, "files/secrets.yaml: its sha256 is not the manifest's"),
        (_truncate, "files/homeserver.db: 0 bytes, the manifest says"),
        (lambda made: (made / "manifest.json").unlink(), "has no manifest.json: the backup did"),
        (lambda made: (made / "manifest.json").write_text("{"), "manifest.json: cannot read"),
        (lambda made: (made / "files" / "extra").write_text("x"), "files/extra: not in the"),
    ],
    ids=["changed", "truncated", "no manifest", "bad manifest", "extra file"],
)
def test_restore_refuses_a_damaged_backup_and_writes_nothing(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any, error: str
) -> None:
    damage(made)
    new = tmp_path / "restored"
    assert error in _refused(["restore", str(made), str(new)], capsys)
    assert not new.exists()


def test_restore_refuses_a_non_empty_folder_and_writes_nothing(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "restored"
    new.mkdir()
    (new / "notes.txt").write_text("mine")
    err = _refused(["restore", str(made), str(new)], capsys)
    assert f"{new} exists and is not an empty folder" in err
    assert [p.name for p in new.iterdir()] == ["notes.txt"]


def test_restore_refuses_a_sqlite_backup_into_postgresql(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "restored"
    err = _refused(["restore", str(made), str(new), "--database", "postgresql://u@h/d"], capsys)
    assert "a SQLite backup restores onto SQLite" in err
    assert not new.exists()
