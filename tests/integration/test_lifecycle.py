"""A person deleted from the roster: the account is deactivated and leaves every room, DMs too,
and the phone is free again (issue 3, point 8). Real Synapse on SQLite; no grace period."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sferum_shared import matrix
from tests.integration.clients import (
    NEWCOMER_PASSWORD,
    NewUser,
    User,
    fetch_media,
    login,
    upload_media,
)
from tests.integration.conftest import make_deployment
from tests.integration.harness import Deployment, demo_roster_folder, sferumctl
from tests.integration.test_polls import poll_start, response

pytestmark = pytest.mark.integration

SERVER = "leave.test"
LEAVER, CHILD, TEACHER, OTHER_PARENT = "g-novikov", "p-5a-4", "t-1", "g-volkova"
PHONE = "+7 916 555-10-01"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = make_deployment(tmp_path_factory.mktemp("leave"), "sqlite", None, SERVER)
    deployment.init()
    # The module's section with no grace period: deactivation follows the import at once.
    deployment.override_module("70-no-grace", "provisioning", {"deactivate_after_hours": 0})
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        yield deployment
    finally:
        deployment.stop()


async def test_a_server_without_support_contacts_answers_matrix_not_found(
    deployment: Deployment,
) -> None:
    """No `init --support-email/--support-page` here: /.well-known/matrix/support is Matrix's
    JSON 404, and Synapse's /.well-known/matrix/client is there as ever."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{deployment.base_url}/.well-known/matrix/support") as response:
            assert response.status == 404
            assert (await response.json())["errcode"] == "M_NOT_FOUND"
        async with http.get(f"{deployment.base_url}/.well-known/matrix/client") as response:
            assert response.status == 200
            assert "m.homeserver" in await response.json()


def _without(source: Path, dest: Path, person: str, child: str) -> Path:
    """The roster without `person` and their only child."""
    dest.mkdir()
    for f in source.iterdir():
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        (dest / f.name).write_text(
            "".join(line for line in lines if person not in line and child not in line), "utf-8"
        )
    return dest


async def _register(deployment: Deployment, person: str, phone: str) -> User:
    out = sferumctl("link-codes", str(deployment.dir), "--person", person, "--format", "json")
    code = json.loads(out.stdout)["codes"][0]["code"]
    newcomer = NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl")
    await newcomer.enter_code(code)
    assert (await newcomer.verify_phone(phone)).status == 200
    done = await newcomer.finish()
    assert done.status == 200, done
    return await login(deployment.base_url, done.body["user_id"], NEWCOMER_PASSWORD)


async def test_a_deleted_person_is_deactivated_and_leaves_every_room(
    deployment: Deployment, tmp_path: Path
) -> None:
    accounts = deployment.issue(TEACHER, OTHER_PARENT)
    teacher, other_parent = [
        await login(deployment.base_url, accounts[p]["user_id"], accounts[p]["password"])
        for p in (TEACHER, OTHER_PARENT)
    ]
    parent = await _register(deployment, LEAVER, PHONE)
    deployment.reconcile()
    parents_chat = await other_parent.resolve(f"#parents-5a:{SERVER}")
    dm = await parent.create_room(is_direct=True, invite=[teacher.user_id])
    assert dm.status == 200, dm
    dm_id = dm.body["room_id"]
    assert (await teacher.call("POST", f"/rooms/{dm_id}/join", {})).status == 200
    assert parent.user_id in await other_parent.members(parents_chat)

    roster = _without(demo_roster_folder(), tmp_path / "roster", LEAVER, CHILD)
    sferumctl("roster", "import", str(deployment.dir), str(roster))
    # The import's own reconcile deactivates at once (no grace period); this one waits for it.
    assert deployment.reconcile()["failures"] == 0
    assert f"deactivating {parent.user_id}" in deployment.log_tail(400)

    gone = await parent.call("GET", "/joined_rooms")
    assert gone.status == 401 and gone.body["errcode"] == "M_UNKNOWN_TOKEN", gone
    relogin = await NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl")._post(
        f"{deployment.base_url}/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": parent.user_id},
            "password": NEWCOMER_PASSWORD,
        },
    )
    assert relogin.status == 403, relogin  # deactivation wiped the password
    # Synapse's parter takes the account out of every room in the background.
    for _ in range(100):
        if parent.user_id not in (await teacher.members(dm_id)) | (
            await other_parent.members(parents_chat)
        ):
            break
        await asyncio.sleep(0.1)
    assert parent.user_id not in await teacher.members(dm_id)
    assert parent.user_id not in await other_parent.members(parents_chat)
    # The phone is released: somebody else may register with it now.
    other = NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl")
    asked = await other.ask_sms(PHONE)
    assert asked.status == 200, asked


PUPIL, CLASSMATE, PUPIL_PHONE = "p-5a-2", "p-5a-3", "+7 916 555-10-02"
NOTE = "Домашнее задание сдам завтра, честное слово"
FILE = b"my essay, written by me\n"


async def _teacher(deployment: Deployment) -> User:
    """The class teacher of 5А signed in, with a new card if an earlier test issued hers."""
    account = deployment.issue(TEACHER)[TEACHER]
    if account["password"] is None:
        out = sferumctl(
            "accounts", "reset", str(deployment.dir), "--person", TEACHER, "--format", "json"
        )
        account = json.loads(out.stdout)[0]
    return await login(deployment.base_url, account["user_id"], account["password"])


async def test_a_person_gets_their_data_and_then_has_it_erased(
    deployment: Deployment, tmp_path: Path
) -> None:
    """152-ФЗ: `person export` gives a pupil everything the platform holds about them, and
    `person erase` takes it away, saying what is kept (issue 15, item 8)."""
    pupil = await _register(deployment, PUPIL, PUPIL_PHONE)
    accounts = deployment.issue(CLASSMATE)
    classmate = await login(
        deployment.base_url, accounts[CLASSMATE]["user_id"], accounts[CLASSMATE]["password"]
    )
    teacher = await _teacher(deployment)
    deployment.reconcile()
    chat = await pupil.resolve(f"#class-5a:{SERVER}")
    said = await pupil.send_text(chat, NOTE)
    assert said.status == 200, said
    uploaded = await upload_media(pupil, FILE, "essay.txt", "text/plain")
    assert uploaded.status == 200, uploaded
    mxc = uploaded.body["content_uri"]
    posted = await pupil.send(
        chat, "m.room.message", {"msgtype": "m.file", "body": "essay.txt", "url": mxc}
    )
    assert posted.status == 200, posted
    assert await fetch_media(classmate, mxc) == 200

    # A vote in a teacher's poll and a reaction: Synapse's own redaction leaves both.
    poll = await teacher.send(chat, matrix.POLL_START, poll_start("Экскурсия в музей?", "Да"))
    assert poll.status == 200, poll
    vote = await pupil.send(chat, matrix.POLL_RESPONSE, response(poll.body["event_id"], "a0"))
    theirs = await classmate.send_text(chat, "Я иду в музей")
    like = await pupil.send(
        chat,
        matrix.REACTION,
        {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": theirs.body["event_id"],
                "key": "👍",
            }
        },
    )
    assert vote.status == like.status == 200, (vote, like)
    votes = "SELECT voter FROM sferum_poll_votes WHERE voter = ?"
    for _ in range(100):  # the vote is counted in the background
        if deployment.sql(votes, pupil.user_id):
            break
        await asyncio.sleep(0.1)
    assert deployment.sql(votes, pupil.user_id)

    out = tmp_path / "export.zip"
    dry = sferumctl("person", "export", str(deployment.dir), PUPIL, str(out), "--dry-run")
    assert "1 upload(s)" in dry.stdout and not out.exists(), dry.stdout
    sferumctl("person", "export", str(deployment.dir), PUPIL, str(out))
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert "Что в архиве" in archive.read("README.txt").decode()
        # Synapse writes each room's events as JSON objects one after another, ASCII-escaped.
        events = [archive.read(n).decode() for n in names if n.endswith("/events")]
        assert any(json.dumps(NOTE)[1:-1] in text for text in events), names
        assert archive.read(f"media/{mxc.rsplit('/', 1)[1]}") == FILE
        links = json.loads(archive.read("sferum/sferum_links.json"))
        assert [(r["user_id"], r["msisdn"]) for r in links] == [(pupil.user_id, "79165551002")]
        assert json.loads(archive.read("sferum/sferum_people.json"))[0]["sourced_id"] == PUPIL
        [mine] = json.loads(archive.read("sferum/sferum_poll_votes.json"))
        assert (mine["voter"], mine["event_id"]) == (pupil.user_id, vote.body["event_id"])

    planned = sferumctl("person", "erase", str(deployment.dir), PUPIL, "--dry-run")
    assert "nothing changed" in planned.stdout and "source of truth" in planned.stdout
    assert "redact: 1 reaction(s)" in planned.stdout, planned.stdout
    assert "redact: 1 poll vote(s)" in planned.stdout, planned.stdout
    assert "delete: 1 row(s) of sferum_poll_votes" in planned.stdout, planned.stdout
    assert (await pupil.call("GET", "/joined_rooms")).status == 200
    assert await fetch_media(classmate, mxc) == 200

    erased = sferumctl("person", "erase", str(deployment.dir), PUPIL)
    assert f"{PUPIL} erased" in erased.stdout, erased.stdout
    assert "redacted 1 reaction(s), 1 poll vote(s)" in erased.stdout, erased.stdout
    gone = (said, posted, vote, like)
    for event_id in (reply.body["event_id"] for reply in gone):
        seen = await classmate.call("GET", f"/rooms/{chat}/event/{event_id}")
        assert seen.status == 200 and seen.body["content"] == {}, seen
    assert await fetch_media(classmate, mxc) == 404
    assert (await pupil.call("GET", "/joined_rooms")).status == 401
    assert deployment.sql("SELECT * FROM sferum_people WHERE sourced_id = ?", PUPIL) == []
    assert deployment.sql(votes, pupil.user_id) == []
    asked = await NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl").ask_sms(
        PUPIL_PHONE
    )
    assert asked.status == 200, asked

    again = sferumctl("person", "erase", str(deployment.dir), PUPIL, check=False)
    assert again.returncode == 1 and f"no person '{PUPIL}'" in again.stderr, again
