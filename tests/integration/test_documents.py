"""Files in the demo school on real Synapse (SQLite and PostgreSQL): each role's largest upload,
as clients are told and as uploads are judged, and programs refused however they are named."""

from __future__ import annotations

import pytest

from tests.integration.clients import User, upload
from tests.integration.conftest import SERVER, School

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def school(demo_school: School) -> School:
    return demo_school


def first(items: set[str]) -> str:
    return sorted(items)[0]


async def test_each_role_uploads_up_to_its_own_limit(school: School) -> None:
    pupil = await school.login(sorted(school.roster.students["5a"])[0])
    teacher = await school.login(first(school.roster.teachers["5a"]))
    for user, size in ((pupil, 25 * MIB), (teacher, 100 * MIB)):
        config = await user.call_path("GET", "/_matrix/client/v1/media/config")
        assert config.status == 200 and config.body["m.upload.size"] == size, config

    video = bytes(60 * MIB)  # a lesson's recording
    refused = await upload(pupil, video, "lesson.mp4", "video/mp4")
    assert (refused.status, refused.body.get("errcode")) == (413, "M_TOO_LARGE"), refused
    passed = await upload(teacher, video, "lesson.mp4", "video/mp4")
    assert passed.status == 200 and passed.body["content_uri"].startswith("mxc://"), passed


async def test_programs_are_refused_however_they_are_named(school: School) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(512)
    refused = await upload(teacher, program, "report.pdf", "application/pdf")
    assert refused.status == 400, refused
    pdf = await upload(teacher, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "report.pdf", "application/pdf")
    assert pdf.status == 200, pdf

    # A message that says its file is a program is refused too, whoever's file it points at.
    class_chat = await teacher.resolve(school.alias("class", "5a"))
    for content in (
        {"info": {"mimetype": "application/x-msdownload"}, "body": "report.pdf"},
        {"info": {"mimetype": "application/octet-stream"}, "body": "setup.exe"},
    ):
        sent = await teacher.send(
            class_chat,
            "m.room.message",
            {"msgtype": "m.file", "url": pdf.body["content_uri"], **content},
        )
        assert (sent.status, sent.reason) == (403, "ru.sferum.file_type_refused"), sent
    fine = await teacher.send(
        class_chat,
        "m.room.message",
        {
            "msgtype": "m.file",
            "body": "report.pdf",
            "url": pdf.body["content_uri"],
            "info": {"mimetype": "application/pdf"},
        },
    )
    assert fine.status == 200, fine


async def own_rooms(user: User, kind: str) -> list[str]:
    """The user's joined rooms of a platform kind, by their protected kind event."""
    found = []
    for room_id in sorted(await user.joined_rooms()):
        state = await user.call("GET", f"/rooms/{room_id}/state/ru.sferum.room/")
        if state.status == 200 and state.body.get("kind") == kind:
            found.append(room_id)
    return found


async def test_every_adult_has_documents_of_their_own(school: School) -> None:
    guardian_id = first(school.roster.guardians_of(sorted(school.roster.students["5a"])[0]))
    guardian = await school.login(guardian_id)
    [documents] = await own_rooms(guardian, "docs")
    assert await guardian.members(documents) == {guardian.user_id, f"@sferum:{SERVER}"}
    name = await guardian.call("GET", f"/rooms/{documents}/state/m.room.name/")
    assert name.body == {"name": "Мои документы"}, name
    kind = await guardian.call("GET", f"/rooms/{documents}/state/ru.sferum.room/")
    assert kind.body["person"] == guardian_id, kind

    # Nobody else gets in: not by the owner's invitation, not by asking.
    teacher = await school.login(first(school.roster.teachers["5a"]))
    invited = await guardian.call(
        "POST", f"/rooms/{documents}/invite", {"user_id": teacher.user_id}
    )
    assert invited.status == 403, invited
    joined = await teacher.call("POST", f"/rooms/{documents}/join", {})
    assert joined.status == 403, joined
    # Teachers have theirs; pupils, who have their diary, none.
    assert len(await own_rooms(teacher, "docs")) == 1
    pupil = await school.login(sorted(school.roster.students["5a"])[0])
    assert await own_rooms(pupil, "docs") == []
