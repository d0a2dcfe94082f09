"""The school's sticker pack on real Synapse (SQLite and PostgreSQL): `sferumctl stickers import`
puts it into the spaces, every member's account data offers it (the user's own packs kept), and
the pictures reach the members; a bad folder changes nothing."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from sferum_shared import matrix
from synapse_sferum.ctl.demo_stickers import demo_stickers
from tests.integration.clients import User, fetch_media
from tests.integration.conftest import SERVER, School
from tests.integration.harness import sferumctl

pytestmark = pytest.mark.integration

SCHOOL_PACK = "ru.sferum.school"


@pytest.fixture
def school(demo_school: School) -> School:
    return demo_school


async def account_data(user: User, data_type: str) -> dict[str, object]:
    path = f"/user/{urllib.parse.quote(user.user_id)}/account_data/{data_type}"
    reply = await user.call("GET", path)
    assert reply.status == 200, reply
    return reply.body


async def test_the_school_pack_reaches_every_member(school: School, tmp_path: Path) -> None:
    pupil = await school.login(sorted(school.roster.students["5a"])[0])
    own = {"rooms": {"!own:elsewhere": {"": {}}}}  # a pack of the pupil's own, set before
    path = f"/user/{urllib.parse.quote(pupil.user_id)}/account_data/{matrix.PONIES_EMOTE_ROOMS}"
    assert (await pupil.call("PUT", path, own)).status == 200

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.png").write_bytes(demo_stickers()["улыбка.png"])
    (bad / "virus.png").write_bytes(b"MZ\x90\x00" + bytes(64))
    refused = sferumctl("stickers", "import", str(school.deployment.dir), str(bad), check=False)
    assert refused.returncode != 0 and "virus.png: not a picture" in refused.stderr, refused

    pack = tmp_path / "pack"
    pack.mkdir()
    for name, data in demo_stickers().items():
        (pack / name).write_bytes(data)
    done = sferumctl("stickers", "import", str(school.deployment.dir), str(pack))
    assert ":улыбка:" in done.stdout and "Стикеры школы" in done.stdout, done.stdout

    class_space = await pupil.resolve(school.alias("space", "5a"))
    for event_type in (matrix.IMAGE_PACK, matrix.PONIES_ROOM_EMOTES):
        state = await pupil.call("GET", f"/rooms/{class_space}/state/{event_type}/{SCHOOL_PACK}")
        assert state.status == 200, state
        assert state.body["pack"]["display_name"] == "Стикеры школы"
        assert set(state.body["images"]) == {name[:-4] for name in demo_stickers()}

    stable = await account_data(pupil, matrix.IMAGE_PACK_ROOMS)
    assert stable == {"rooms": {class_space: {SCHOOL_PACK: {}}}}, stable
    ponies = await account_data(pupil, matrix.PONIES_EMOTE_ROOMS)
    assert ponies == {"rooms": {"!own:elsewhere": {"": {}}, class_space: {SCHOOL_PACK: {}}}}

    # A teacher's clients offer it from the school space too; a pupil can load the pictures.
    teacher = await school.login(sorted(school.roster.teachers["5a"])[0])
    school_space = await teacher.resolve(f"#school-school-1:{SERVER}")
    rooms = (await account_data(teacher, matrix.IMAGE_PACK_ROOMS))["rooms"]
    assert isinstance(rooms, dict) and school_space in rooms and class_space in rooms, rooms
    assert await fetch_media(pupil, state.body["images"]["улыбка"]["url"]) == 200
