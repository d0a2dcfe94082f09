"""Files by role: upload sizes and quotas, and programs refused by content and by declaration."""

from __future__ import annotations

from typing import Any

import pytest

from sferum_shared.ids import PersonId
from sferum_shared.model import Member, Role
from synapse_sferum.config import ConfigError, MediaConfig, parse_config
from synapse_sferum.policy import documents

MIB = 1024 * 1024
CONFIG = MediaConfig()


def member(*roles: Role) -> Member:
    return Member(person_id=PersonId("p"), roles=frozenset(roles), org_ids=frozenset({"s"}))


@pytest.mark.parametrize(
    ("roles", "limit_mib", "quota_mib"),
    [
        ((Role.STUDENT,), 25, 1024),
        ((Role.GUARDIAN,), 50, 2048),
        ((Role.TEACHER,), 100, 10240),
        ((Role.STAFF,), 100, 10240),
        ((Role.TEACHER, Role.GUARDIAN), 100, 10240),  # a teacher who is also a parent
    ],
)
def test_the_limits_follow_the_role(
    roles: tuple[Role, ...], limit_mib: int, quota_mib: int
) -> None:
    person = member(*roles)
    assert documents.upload_limit(person, CONFIG.upload_mib) == limit_mib * MIB
    quota = documents.upload_quota(person, CONFIG.quota_mib, CONFIG.quota_days)
    assert quota == documents.Quota(quota_mib * MIB, 365 * 24 * 3600 * 1000)


def test_accounts_outside_the_directory_keep_synapses_limit() -> None:
    assert documents.upload_limit(None, CONFIG.upload_mib) is None
    assert documents.upload_quota(None, CONFIG.quota_mib, 365) is None
    assert documents.upload_limit(member(), CONFIG.upload_mib) is None


def test_the_media_section_is_read_and_checked() -> None:
    base = {"admin_api_secret": "x" * 16}
    config = parse_config({**base, "media": {"pupil_upload_mb": 10, "quota_days": 30}})
    assert config.media.upload_mib[Role.STUDENT] == 10 and config.media.quota_days == 30
    assert config.media.largest_upload_mb == 100
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "media": {"staff_upload_mb": 0}})
    assert e.value.key == "media.staff_upload_mb" and "1 to 2048" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "media": {"pupil_upload": 10}})
    assert e.value.key == "media.pupil_upload"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00", "a Windows program"),
        (b"\x7fELF\x02\x01\x01\x00", "a Linux program"),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", "a macOS program"),
        (b"#!/bin/sh\necho", "a script"),
        (b"L\x00\x00\x00\x01\x14\x02\x00\x00", "a Windows shortcut"),
        (b"%PDF-1.7\n", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"PK\x03\x04", None),  # a .docx is a zip; so is an .apk, refused by its name
        (b"\xd0\xcf\x11\xe0", None),  # an old .doc
        (b"", None),
        (b"M", None),
    ],
)
def test_programs_are_known_by_their_first_bytes(head: bytes, kind: str | None) -> None:
    assert documents.program_kind(head) == kind


def file_message(msgtype: str = "m.file", **content: Any) -> dict[str, Any]:
    return {"msgtype": msgtype, "body": "homework.pdf", "url": "mxc://s/a", **content}


@pytest.mark.parametrize(
    ("event_type", "content", "refused"),
    [
        ("m.room.message", file_message(), False),
        ("m.room.message", file_message(info={"mimetype": "application/pdf"}), False),
        ("m.room.message", file_message(info={"mimetype": "application/x-msdownload"}), True),
        ("m.room.message", file_message(info={"mimetype": "Application/X-Sh; charset=x"}), True),
        ("m.room.message", file_message(body="setup.EXE"), True),
        ("m.room.message", file_message(body="game.apk"), True),
        ("m.room.message", file_message("m.image", body="photo.js"), True),
        # With a filename, the body is a caption: a site's name in it is no file.
        ("m.room.message", file_message(body="see school.com", filename="plan.pdf"), False),
        ("m.room.message", file_message(body="plan.pdf", filename="run.bat"), True),
        ("m.room.message", {"msgtype": "m.text", "body": "run setup.exe"}, False),
        ("m.sticker", {"body": "x.exe", "url": "mxc://s/a"}, False),
    ],
)
def test_messages_that_declare_a_program_are_refused(
    event_type: str, content: dict[str, Any], refused: bool
) -> None:
    decision = documents.may_post_file(event_type, content)
    assert decision.allowed is not refused
    if refused:
        assert decision.reason == "ru.sferum.file_type_refused"
