"""`sferumctl backup` of a running server and `sferumctl restore` of it into a new folder, on a
new port (and, on PostgreSQL, into a new database): the copy starts, and a pupil signs in with
the same password to every room, message, upload and diary entry from before the backup."""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.clients import User, login, upload_media
from tests.integration.harness import Deployment, demo_roster_folder, free_port, sferumctl
from tests.integration.test_diary_bridge_sources import push, pushed_mark, sync

pytestmark = pytest.mark.integration

SERVER = "backup.test"
PUPIL = "p-5a-1"  # the pushed mark's pupil
TEXTS = ("Привет, класс!", "Кто решил № 412?", "Я решил, сейчас пришлю")
FILE = b"%PDF-1.4 the solution, by hand\n"


#: One class of the demo school, so that its first reconcile makes a few rooms, not the school's.
KEPT = {"school-1", "school-year", "5a", "course-homeroom-5", "t-1", "e-5a-t-1", PUPIL}
KEPT |= {f"e-5a-{PUPIL}", "g-volkova", "g-volkov"}  # the pupil's parents


def _one_pupil_roster(dest: Path) -> Path:
    """The demo roster cut down to the rows of KEPT (by sourcedId); manifest.csv as it is."""
    dest.mkdir()
    for source in demo_roster_folder().iterdir():
        header, *rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
        if source.name != "manifest.csv":
            rows = [row for row in rows if row.split(",", 1)[0] in KEPT]
        (dest / source.name).write_text(header + "".join(rows), encoding="utf-8")
    return dest


def _deployment(folder: Path, database: str) -> Deployment:
    return Deployment(
        folder,
        SERVER,
        database,
        extra_init=("--diary-source", "push", "--diary-port", str(free_port())),
    )


async def _room_texts(user: User, room_id: str) -> list[str]:
    path = f"/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=100"
    reply = await user.call("GET", path)
    assert reply.status == 200, reply
    return [
        e["content"].get("body", "") for e in reply.body["chunk"] if e["type"] == "m.room.message"
    ]


async def _download(user: User, mxc: str) -> bytes:
    server, media_id = mxc.removeprefix("mxc://").split("/")
    url = f"{user.base_url}/_matrix/client/v1/media/download/{server}/{media_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authorization": f"Bearer {user.token}"}) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.read()


def _ledger(deployment: Deployment) -> list[tuple[Any, ...]]:
    """The diary bridge's ledger rows: its own SQLite file, or tables in the PostgreSQL one."""
    statement = "SELECT item_key, room_id, event_id, state FROM diary_posts ORDER BY item_key"
    if deployment.database != "sqlite":
        return deployment.sql(statement)
    with sqlite3.connect(deployment.dir / "diary.db") as db:
        return db.execute(statement).fetchall()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_backup_of_a_running_server_restores_into_a_new_one(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres") if backend == "postgresql" else None
    database = postgres.create_database("hs_backup") if postgres else "sqlite"
    original = _deployment(tmp_path / "original", database)
    original.init()
    original.start()
    restored: Deployment | None = None
    try:
        roster = _one_pupil_roster(tmp_path / "roster")
        sferumctl("roster", "import", str(original.dir), str(roster))
        account = original.issue(PUPIL)[PUPIL]
        assert original.reconcile()["failures"] == 0
        pupil = await login(original.base_url, account["user_id"], account["password"])
        class_chat = await pupil.resolve(f"#class-5a:{SERVER}")
        for text in TEXTS:
            assert (await pupil.send_text(class_chat, text)).status == 200
        uploaded = await upload_media(pupil, FILE, "solution.pdf", "application/pdf")
        assert uploaded.status == 200, uploaded
        mxc = uploaded.body["content_uri"]
        content = {"msgtype": "m.file", "body": "solution.pdf", "url": mxc}
        assert (await pupil.send(class_chat, "m.room.message", content)).status == 200
        status, answer = push(original, {"id": "req-1", "marks": [pushed_mark("backup-1", "5")]})
        assert status == 200 and answer["accepted"] == 1, answer
        assert sync(original)[0] == 0
        rooms, ledger = await pupil.joined_rooms(), _ledger(original)
        assert [row[0] for row in ledger] == ["mark:backup-1"], ledger

        out = tmp_path / "backup"
        sferumctl("backup", str(original.dir), str(out))  # the server keeps running
        manifest = json.loads((out / "manifest.json").read_text())
        assert (manifest["server_name"], manifest["database"]) == (SERVER, backend)

        target = postgres.create_database("hs_restored") if postgres else "sqlite"
        restored = _deployment(tmp_path / "restored", target)
        ports = ("--port", str(restored.port), "--diary-port", restored.extra_init[-1])
        if postgres:
            # Without --database it would go into the original database, which is in use.
            over = sferumctl("restore", str(out), str(restored.dir), *ports, check=False)
            assert over.returncode == 1 and "is not empty" in over.stderr, over
            assert not restored.dir.exists()
        given = ("--database", target) if postgres else ()
        sferumctl("restore", str(out), str(restored.dir), *ports, *given)
        restored.start()

        again = await login(restored.base_url, account["user_id"], account["password"])
        assert await again.joined_rooms() == rooms
        texts = await _room_texts(again, class_chat)
        assert set(TEXTS) | {"solution.pdf"} <= set(texts), texts
        assert await _download(again, mxc) == FILE
        # Sessions are rows of the database: the token from before the backup still works.
        kept = User(restored.base_url, pupil.user_id, pupil.token)
        assert await kept.joined_rooms() == rooms
        assert _ledger(restored) == ledger
    finally:
        original.stop()
        if restored is not None:
            restored.stop()
