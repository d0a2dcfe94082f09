"""The closed school space end to end: real Synapse (SQLite and PostgreSQL), real clients."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
import urllib.parse
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from sferum_shared.vocabulary import Key
from tests.demo import today
from tests.integration.clients import (
    Reply,
    User,
    fetch_media,
    login,
    nio_client,
    upload_media,
    wait_for_text,
)
from tests.integration.conftest import SERVER, School
from tests.integration.harness import copy_roster, demo_roster_folder, sferumctl
from tests.integration.test_attacks import PNG

pytestmark = pytest.mark.integration


@pytest.fixture
def school(demo_school: School) -> School:
    return demo_school


def first(items: set[str]) -> str:
    return sorted(items)[0]


def pupils(school: School, class_id: str) -> list[str]:
    return sorted(school.roster.students[class_id])


# -- imports ---------------------------------------------------------------------------------


def test_import_reports_created_and_unchanged_reimport_writes_nothing(school: School) -> None:
    assert "people" in school.first_import
    again = sferumctl("roster", "import", str(school.deployment.dir), str(demo_roster_folder()))
    for line in again.stdout.splitlines()[1:]:
        cells = line.split()
        if len(cells) == 4 and cells[0] in (
            "orgs",
            "people",
            "demographics",
            "classes",
            "enrollments",
        ):
            assert cells[1:] == ["0", "0", "0"], again.stdout


# -- what a pupil sees ------------------------------------------------------------------------


async def test_pupil_sees_class_space_chat_and_news(school: School) -> None:
    pupil = pupils(school, "5a")[0]
    user = await school.login(pupil)
    joined = await user.joined_rooms()
    for kind in ("space", "class", "news"):
        assert await user.resolve(school.alias(kind, "5a")) in joined, kind
    # and nothing of the other class
    assert await user.resolve(school.alias("class", "6b")) not in joined


async def test_school_news_post_is_mirrored_into_class_news(school: School) -> None:
    teacher = first(school.roster.teachers["5a"])
    teacher_user = await school.login(teacher)
    news_school = await teacher_user.resolve(f"#news-school-school-1:{SERVER}")
    pupil = pupils(school, "5a")[0]
    client = await nio_client(
        school.deployment.base_url, school.user_id(pupil), school.accounts[pupil]["password"]
    )
    try:
        class_news = await teacher_user.resolve(school.alias("news", "5a"))
        sent = await teacher_user.send_text(news_school, "Завтра линейка в 8:30")
        assert sent.status == 200, sent
        body = await wait_for_text(client, class_news, "Завтра линейка в 8:30")
        assert body.endswith("Завтра линейка в 8:30")
    finally:
        await client.close()


async def _mirror_of(user: User, room_id: str, source_event_id: str) -> dict[str, Any]:
    """The platform's copy of a school-news event in a class news room (waits for it)."""
    for _ in range(100):
        reply = await user.call("GET", f"/rooms/{room_id}/messages?dir=b&limit=50")
        for event in reply.body.get("chunk", []):
            origin = event.get("content", {}).get("ru.sferum.mirror_of", {})
            if origin.get("event_id") == source_event_id:
                return dict(event)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no mirror of {source_event_id} in {room_id}")


async def test_school_news_edits_and_redactions_are_mirrored(school: School) -> None:
    staff = await school.login(school.roster.of_role("administrator")[0])
    news_school = await staff.resolve(f"#news-school-school-1:{SERVER}")
    reader = await school.login(first(school.roster.guardians_of(pupils(school, "6b")[0])))
    class_news = await reader.resolve(school.alias("news", "6b"))
    post = await staff.send_text(news_school, "Собрание в пятницу")
    assert post.status == 200, post
    mirrored = await _mirror_of(reader, class_news, post.body["event_id"])
    edit = await staff.call(
        "PUT",
        f"/rooms/{news_school}/send/m.room.message/edit1",
        {
            "msgtype": "m.text",
            "body": "* Собрание в субботу",
            "m.new_content": {"msgtype": "m.text", "body": "Собрание в субботу"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": post.body["event_id"]},
        },
    )
    assert edit.status == 200, edit
    mirrored_edit = await _mirror_of(reader, class_news, edit.body["event_id"])
    relation = mirrored_edit["content"]["m.relates_to"]
    assert relation == {"rel_type": "m.replace", "event_id": mirrored["event_id"]}
    assert mirrored_edit["content"]["m.new_content"]["body"].endswith("Собрание в субботу")
    redaction = await staff.call(
        "PUT", f"/rooms/{news_school}/redact/{post.body['event_id']}/red1", {}
    )
    assert redaction.status == 200, redaction
    for _ in range(100):
        seen = await reader.call("GET", f"/rooms/{class_news}/event/{mirrored['event_id']}")
        if not seen.body.get("content"):
            break
        await asyncio.sleep(0.2)
    assert seen.body.get("content") == {}, seen


async def _pins_become(user: User, room_id: str, expected: list[str]) -> None:
    for _ in range(100):
        reply = await user.call("GET", f"/rooms/{room_id}/state/m.room.pinned_events/")
        if reply.body.get("pinned", []) == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"pins of {room_id}: {reply.body}, not {expected}")


async def test_articles_keep_html_and_images_and_pins_pin_the_copies(school: School) -> None:
    staff = await school.login(school.roster.of_role("administrator")[0])
    news_school = await staff.resolve(f"#news-school-school-1:{SERVER}")
    teacher = await school.login(first(school.roster.teachers["6b"]))
    reader = await school.login(first(school.roster.guardians_of(pupils(school, "6b")[0])))
    class_news = await reader.resolve(school.alias("news", "6b"))
    uploaded = await upload_media(staff, PNG)
    assert uploaded.status == 200, uploaded
    mxc = str(uploaded.body["content_uri"])
    article = f'<h1>Весенний концерт</h1><ul><li>5а</li><li>6б</li></ul><img src="{mxc}">'
    post = await staff.send(
        news_school,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "# Весенний концерт\n- 5а\n- 6б",
            "format": "org.matrix.custom.html",
            "formatted_body": article,
        },
    )
    photo = await staff.send(
        news_school,
        "m.room.message",
        {"msgtype": "m.image", "body": "Репетиция", "filename": "photo.png", "url": mxc},
    )
    assert post.status == photo.status == 200, (post, photo)
    copy = await _mirror_of(reader, class_news, post.body["event_id"])
    assert copy["content"]["formatted_body"].startswith("<p><b>"), copy
    assert copy["content"]["formatted_body"].endswith(f"</b></p>{article}"), copy
    photo_copy = (await _mirror_of(reader, class_news, photo.body["event_id"]))["content"]
    assert (photo_copy["url"], photo_copy["filename"]) == (mxc, "photo.png"), photo_copy
    assert await fetch_media(reader, mxc) == 200  # the guardian never joined the school news

    own = await teacher.send_text(class_news, "Концерт 6б — в актовом зале")
    pinned = await teacher.put_state(
        class_news, "m.room.pinned_events", {"pinned": [own.body["event_id"]]}
    )
    assert pinned.status == 200, pinned
    school_pin = await staff.put_state(
        news_school, "m.room.pinned_events", {"pinned": [post.body["event_id"]]}
    )
    assert school_pin.status == 200, school_pin
    await _pins_become(reader, class_news, [copy["event_id"], own.body["event_id"]])
    unpinned = await staff.put_state(news_school, "m.room.pinned_events", {"pinned": []})
    assert unpinned.status == 200, unpinned
    await _pins_become(reader, class_news, [own.body["event_id"]])


async def _pins_of(user: User, room_id: str) -> list[str]:
    reply = await user.call("GET", f"/rooms/{room_id}/state/m.room.pinned_events/")
    return list(reply.body.get("pinned", []))


async def _class_pins_open_with(user: User, room_id: str, event_id: str | None) -> None:
    """Waits until the room's first pin is `event_id` (None: until no pin is)."""
    for _ in range(100):
        pins = await _pins_of(user, room_id)
        if (pins[:1] == [event_id]) if event_id else not pins:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"pins of {room_id}: {pins}, not opening with {event_id}")


ARTICLE = (
    "<h1>Открытые уроки</h1><ul><li>5А — математика</li><li>6Б — русский язык</li></ul>"
    '<script>alert(1)</script><p><img src="https://evil.example/x.png" alt="план"></p>'
)
ARTICLE_SENT = (
    "<h1>Открытые уроки</h1><ul><li>5А — математика</li><li>6Б — русский язык</li></ul>"
    "<p>[план]</p>"
)


async def test_an_admin_posts_an_article_as_staff_once_and_pins_it_everywhere(
    school: School, tmp_path: Path
) -> None:
    """`sferumctl news post` (the demo's pinned article): sent as the staff member through the
    school news's rules, cut to what a message may hold, copied and pinned in every class's
    news, and never posted twice. The school's pins are put back at the end."""
    author = school.roster.of_role("administrator")[0]
    staff = await school.login(author)
    news_school = await staff.resolve(f"#news-school-school-1:{SERVER}")
    reader = await school.login(first(school.roster.guardians_of(pupils(school, "6b")[0])))
    class_news = await reader.resolve(school.alias("news", "6b"))
    pins_before = await _pins_of(staff, news_school)
    article = tmp_path / "open-lessons.html"
    article.write_text(ARTICLE, encoding="utf-8")
    folder = str(school.deployment.dir)
    post = ("news", "post", folder, str(article), "--author", author, "--pin", "--key", "t-open")

    posted = sferumctl(*post)
    assert "left out of open-lessons.html" in posted.stdout, posted.stdout
    assert "script, img without an mxc:// src" in posted.stdout, posted.stdout
    assert "pinned in the school news" in posted.stdout, posted.stdout
    event_id = posted.stdout.split(f"as {school.user_id(author)}: ")[1].split()[0]
    sent = await staff.call("GET", f"/rooms/{news_school}/event/{event_id}")
    assert sent.body["sender"] == school.user_id(author), sent
    assert sent.body["content"]["formatted_body"] == ARTICLE_SENT, sent
    assert sent.body["content"]["body"].startswith("Открытые уроки\n5А — математика"), sent
    copy = await _mirror_of(reader, class_news, event_id)
    assert copy["content"]["formatted_body"].endswith(f"</b></p>{ARTICLE_SENT}"), copy
    assert (await _pins_of(staff, news_school))[-1] == event_id
    await _class_pins_open_with(reader, class_news, copy["event_id"])

    again = sferumctl(*post)
    assert f"already: {event_id}; nothing sent" in again.stdout, again.stdout
    assert "pinned already" in again.stdout, again.stdout
    history = await staff.call("GET", f"/rooms/{news_school}/messages?dir=b&limit=50")
    bodies = [e["content"].get("formatted_body") for e in history.body["chunk"]]
    assert bodies.count(ARTICLE_SENT) == 1

    article.write_text(ARTICLE.replace("математика", "геометрия"), encoding="utf-8")
    changed = sferumctl(*post)
    assert f"changed: edited its post {event_id}" in changed.stdout, changed.stdout
    edit_id = changed.stdout.split("(")[-1].split(";")[0]
    edit = await staff.call("GET", f"/rooms/{news_school}/event/{edit_id}")
    assert edit.body["content"]["m.relates_to"]["event_id"] == event_id, edit
    copy_edit = await _mirror_of(reader, class_news, edit_id)
    assert copy_edit["content"]["m.relates_to"]["event_id"] == copy["event_id"], copy_edit
    assert "геометрия" in copy_edit["content"]["m.new_content"]["formatted_body"], copy_edit
    other = school.roster.of_role("administrator")[1]
    article.write_text(ARTICLE.replace("математика", "алгебра"), encoding="utf-8")
    post_as_other = (*post[:5], other, *post[6:])
    refused = sferumctl(*post_as_other, check=False)
    assert refused.returncode == 1 and "only they can change it" in refused.stderr, refused

    teacher = first(school.roster.teachers["6b"])
    for who, extra, refused in (
        (pupils(school, "6b")[0], (), "may not post in the school news of 'school-1'"),
        (teacher, ("--pin",), "may not pin in the school news of 'school-1'"),
        ("nobody", (), "'nobody' is not a person of the directory"),
    ):
        argv = ("news", "post", folder, str(article), "--author", who, "--key", "t-no", *extra)
        answer = sferumctl(*argv, check=False)
        assert answer.returncode == 1 and refused in answer.stderr, (who, answer)
    empty = tmp_path / "empty.html"
    empty.write_text("<p> </p><script>x</script>", encoding="utf-8")
    answer = sferumctl("news", "post", folder, str(empty), "--author", author, check=False)
    assert answer.returncode == 1 and "the article has no text" in answer.stderr, answer
    history = await staff.call("GET", f"/rooms/{news_school}/messages?dir=b&limit=20")
    ids = [e["event_id"] for e in history.body["chunk"]]
    since = history.body["chunk"][: ids.index(edit_id)]
    assert not [e for e in since if e["type"] == "m.room.message"], "a refused article was sent"

    restored = await staff.put_state(news_school, "m.room.pinned_events", {"pinned": pins_before})
    assert restored.status == 200, restored
    removed = await staff.call("PUT", f"/rooms/{news_school}/redact/{event_id}/t-open", {})
    assert removed.status == 200, removed
    for _ in range(100):
        if copy["event_id"] not in await _pins_of(reader, class_news):
            break
        await asyncio.sleep(0.2)
    assert copy["event_id"] not in await _pins_of(reader, class_news)
    anew = sferumctl(*post)  # a removed article is posted again
    assert "posted open-lessons.html" in anew.stdout and event_id not in anew.stdout, anew.stdout
    anew_id = anew.stdout.split(f"as {school.user_id(author)}: ")[1].split()[0]
    removed = await staff.call("PUT", f"/rooms/{news_school}/redact/{anew_id}/t-anew", {})
    assert removed.status == 200, removed


async def test_only_teachers_wear_the_badge(school: School) -> None:
    pupil = await school.login(pupils(school, "5a")[0])
    class_chat = await pupil.resolve(school.alias("class", "5a"))
    reply = await pupil.call("GET", f"/rooms/{class_chat}/joined_members")
    names = {user: info["display_name"] for user, info in reply.body["joined"].items()}
    teachers = {school.user_id(t) for t in school.roster.teachers["5a"]}
    for user, name in names.items():
        if user in teachers:
            assert name.endswith(" 🎓"), (user, name)
        else:
            assert "🎓" not in name, (user, name)
    profile = await pupil.call("GET", f"/profile/{first(teachers)}/displayname")
    assert profile.body["displayname"].endswith(" 🎓"), profile


async def test_every_badge_spoofing_path_fails(school: School) -> None:
    who = pupils(school, "5a")[0]
    pupil = await school.login(who)
    me = school.user_id(who)
    class_chat = await pupil.resolve(school.alias("class", "5a"))
    # the global display name is the server's
    renamed = await pupil.call("PUT", f"/profile/{me}/displayname", {"displayname": "Учитель 🎓"})
    assert renamed.status == 403, renamed
    # a per-room name, plain or with a lookalike sequence, is put back to the real name
    for fake in ("Учитель 🎓", "Артём 👨‍🎓"):
        member = await pupil.put_state(
            class_chat, "m.room.member", {"membership": "join", "displayname": fake}, key=me
        )
        assert member.status == 200, member
        state = await pupil.call("GET", f"/rooms/{class_chat}/state/m.room.member/{me}")
        assert "🎓" not in state.body["displayname"], state
    # a custom profile field is the user's own, and asserts nothing anywhere
    await pupil.call("PUT", f"/profile/{me}/ru.sferum.role", {"ru.sferum.role": "teacher"})
    # a state event claiming a role is refused in a provisioned room
    claimed = await pupil.put_state(class_chat, "ru.sferum.role", {"role": "teacher"}, key=me)
    assert claimed.status == 403, claimed
    # what clients read is the server's word: the sender's role in `unsigned`
    sent = await pupil.send_text(class_chat, "я учитель")
    teacher = await school.login(first(school.roster.teachers["5a"]))
    taught = await teacher.send_text(class_chat, "нет, учитель я")
    for event_id, role in (
        (sent.body["event_id"], "student"),
        (taught.body["event_id"], "teacher"),
    ):
        event = await pupil.call("GET", f"/rooms/{class_chat}/event/{event_id}")
        assert event.body["unsigned"]["ru.sferum.sender_role"] == role, event


# -- refusals -------------------------------------------------------------------------------


async def test_unlinked_account_cannot_join_invite_or_contact(school: School) -> None:
    d = school.deployment
    user_id = d.register_unlinked("stranger", "stranger-pass-1")
    stranger = await login(d.base_url, user_id, "stranger-pass-1")
    class_chat = await stranger.resolve(school.alias("class", "5a"))
    joined = await stranger.call("POST", f"/rooms/{class_chat}/join", {})
    assert joined.status == 403 and joined.reason, joined
    created = await stranger.create_room(
        is_direct=True, invite=[school.user_id(pupils(school, "5a")[0])]
    )
    assert created.status == 403 and created.reason == "ru.sferum.sender_not_in_directory", created
    # and nobody in the school may invite the stranger
    teacher = await school.login(first(school.roster.teachers["5a"]))
    group = await teacher.create_room(name="Кружок")
    assert group.status == 200, group
    invited = await teacher.call(
        "POST", f"/rooms/{group.body['room_id']}/invite", {"user_id": user_id}
    )
    assert invited.status == 403 and invited.reason, invited


async def test_pupil_contacts_classmate_but_not_other_class_or_unrelated_adult(
    school: School,
) -> None:
    a, b = pupils(school, "5a")[:2]
    other = pupils(school, "6b")[0]
    unrelated_guardian = first(school.roster.guardians_of(other) - school.roster.guardians_of(a))
    user = await school.login(a)
    ok = await user.create_room(is_direct=True, invite=[school.user_id(b)])
    assert ok.status == 200, ok
    for target in (other, unrelated_guardian):
        refused = await user.create_room(is_direct=True, invite=[school.user_id(target)])
        assert refused.status == 403, (target, refused)
        assert refused.body["errcode"] == "M_FORBIDDEN" and refused.reason, refused


async def test_no_third_person_in_a_dm(school: School) -> None:
    a, b, c = pupils(school, "5a")[:3]
    user = await school.login(a)
    dm = await user.create_room(is_direct=True, invite=[school.user_id(b)])
    assert dm.status == 200, dm
    third = await user.call(
        "POST", f"/rooms/{dm.body['room_id']}/invite", {"user_id": school.user_id(c)}
    )
    assert third.status == 403 and third.reason == "ru.sferum.dm_third_person", third


async def test_guardian_cannot_join_class_chat(school: School) -> None:
    guardian = first(school.roster.guardians_of(pupils(school, "5a")[0]))
    user = await school.login(guardian)
    class_chat = await user.resolve(school.alias("class", "5a"))
    joined = await user.call("POST", f"/rooms/{class_chat}/join", {})
    assert joined.status == 403 and joined.reason, joined


async def test_no_member_list_shows_a_pupil_to_a_guardian_of_another_class(
    school: School,
) -> None:
    five_a = {school.user_id(p) for p in pupils(school, "5a")}
    only_6b_guardians = {
        g for p in pupils(school, "6b") for g in school.roster.guardians_of(p)
    } - {g for p in pupils(school, "5a") for g in school.roster.guardians_of(p)}
    assert only_6b_guardians
    for guardian in sorted(only_6b_guardians):
        user = await school.login(guardian)
        rooms = await user.joined_rooms()
        assert rooms, guardian
        for room_id in rooms:
            assert not (await user.members(room_id) & five_a), (guardian, room_id)


async def test_teacher_group_can_take_the_class(school: School) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    created = await teacher.create_room(
        name="Подготовка к олимпиаде",
        invite=[school.user_id(p) for p in pupils(school, "5a")],
    )
    assert created.status == 200, created


async def test_nobody_publishes_or_opens_a_room(school: School) -> None:
    teacher = await school.login(first(school.roster.teachers["5a"]))
    public = await teacher.create_room(name="Открытая", visibility="public", preset="public_chat")
    assert public.status == 403 and public.reason, public
    group = await teacher.create_room(name="Закрытая")
    room_id = group.body["room_id"]
    opened = await teacher.put_state(room_id, "m.room.join_rules", {"join_rule": "public"})
    assert opened.status == 403 and opened.reason, opened
    published = await teacher.call(
        "PUT", f"/directory/list/room/{room_id}", {"visibility": "public"}
    )
    assert published.status == 403, published


async def test_only_the_platform_changes_provisioned_rooms(school: School) -> None:
    teacher_id = first(school.roster.teachers["5a"])
    teacher = await school.login(teacher_id)
    class_chat = await teacher.resolve(school.alias("class", "5a"))
    pupil = school.user_id(pupils(school, "5a")[0])
    levels = await teacher.call("GET", f"/rooms/{class_chat}/state/m.room.power_levels/")
    assert levels.status == 200
    assert levels.body["users"].get(school.user_id(teacher_id)) == 50  # teachers moderate
    raised = dict(levels.body, users={**levels.body["users"], school.user_id(teacher_id): 100})
    for reply in (
        await teacher.put_state(class_chat, "m.room.power_levels", raised),
        await teacher.put_state(class_chat, "ru.sferum.room", {"kind": "parents"}),
        await teacher.call("POST", f"/rooms/{class_chat}/kick", {"user_id": pupil}),
        await teacher.put_state(class_chat, "m.room.name", {"name": "Мой класс"}),
    ):
        assert reply.status == 403, reply
    # the teacher moderates: may redact a pupil's message
    pupil_user = await school.login(pupils(school, "5a")[0])
    sent = await pupil_user.send_text(class_chat, "привет всем")
    assert sent.status == 200, sent
    redacted = await teacher.call(
        "PUT", f"/rooms/{class_chat}/redact/{sent.body['event_id']}/r1", {"reason": "флуд"}
    )
    assert redacted.status == 200, redacted


async def test_directory_search_shows_only_contactable_people(school: School) -> None:
    a, b = pupils(school, "5a")[:2]
    other = pupils(school, "6b")[0]
    user = await school.login(a)
    for target, visible in ((b, True), (other, False)):
        localpart = school.user_id(target).split(":")[0][1:]
        found = await user.call(
            "POST", "/user_directory/search", {"search_term": localpart, "limit": 50}
        )
        ids = {r["user_id"] for r in found.body["results"]}
        assert (school.user_id(target) in ids) is visible, (target, found)


async def test_a_client_that_is_not_ours_works(school: School) -> None:
    """mautrix-python: a pupil posts in the class chat; the class teacher reads it with nio."""
    from mautrix.types import MessageType, TextMessageEventContent

    async with school.mautrix(pupils(school, "5a")[1]) as client:
        class_chat = (await client.resolve_room_alias(school.alias("class", "5a"))).room_id
        await client.send_message(
            class_chat,
            TextMessageEventContent(msgtype=MessageType.TEXT, body="сообщение из mautrix"),
        )
    teacher = first(school.roster.teachers["5a"])
    reader = await nio_client(
        school.deployment.base_url, school.user_id(teacher), school.accounts[teacher]["password"]
    )
    try:
        await wait_for_text(reader, str(class_chat), "сообщение из mautrix")
    finally:
        await reader.close()


# -- a re-imported roster moves a pupil -----------------------------------------------------


def _move_pupil(roster: Path, pupil: str, old: str, new: str) -> None:
    path = roster / "enrollments.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    header = rows[0]
    cls, user = header.index("classSourcedId"), header.index("userSourcedId")
    for row in rows[1:]:
        if row[user] == pupil and row[cls] == old:
            row[cls] = new
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


async def test_pupil_moved_to_another_class_changes_class_chat(
    school: School, tmp_path: Path
) -> None:
    pupil = pupils(school, "5a")[-1]
    roster = copy_roster(tmp_path / "roster")
    _move_pupil(roster, pupil, "5a", "6b")
    sferumctl("roster", "import", str(school.deployment.dir), str(roster))
    report = school.deployment.reconcile()
    assert report["failures"] == 0, report
    user = await school.login(pupil)
    joined = await user.joined_rooms()
    assert await user.resolve(school.alias("class", "6b")) in joined
    assert await user.resolve(school.alias("class", "5a")) not in joined
    # and back, so other tests see the shipped roster
    sferumctl("roster", "import", str(school.deployment.dir), str(demo_roster_folder()))
    school.deployment.reconcile()


def test_the_admin_api_and_sferumctl_answer_while_a_reconcile_runs(school: School) -> None:
    """A run held at its rooms (PostgreSQL's lock on their planned members, taken from outside)
    is shown running by the API and by `sferumctl reconcile --no-wait`; let go, it finishes and
    `sferumctl reconcile` prints the report of the run it joined."""
    deployment = school.deployment
    if deployment.database == "sqlite":
        pytest.skip("a table lock held from outside the server needs PostgreSQL")
    import psycopg2

    held = psycopg2.connect(deployment.database)
    try:
        with held.cursor() as cursor:
            cursor.execute("LOCK TABLE sferum_room_members IN ACCESS EXCLUSIVE MODE")
        run = deployment.admin("reconcile", {})["run"]
        status = deployment.admin("reconcile-status", {"run": run})
        for _ in range(600):  # until the run is at its rooms, where the lock holds it
            progress = status.get("progress", {})
            if progress.get("run") == run and progress["rooms_total"] > 0:
                break
            time.sleep(0.1)
            status = deployment.admin("reconcile-status", {"run": run})
        assert status["state"] == "running", status
        assert status["progress"]["rooms_done"] < status["progress"]["rooms_total"], status
        assert "reconcile" not in status
        out = sferumctl("reconcile", str(deployment.dir), "--no-wait").stdout
        assert out.startswith(f"run {run + 1}: queued, after run {run} (rooms "), out
    finally:
        held.close()  # rolls back: the lock goes
    waited = sferumctl("reconcile", str(deployment.dir)).stdout.splitlines()
    # run + 1 if it had not started yet (joined), else the one after it
    assert re.fullmatch(rf"run ({run + 1}|{run + 2}): finished", waited[-8]), waited
    assert waited[-7:-6] == ["change         count"] and waited[-1].split() == ["failures", "0"]
    assert deployment.admin("reconcile-status", {"run": run})["state"] == "finished"


# -- a promoted class keeps its rooms --------------------------------------------------------

CLASS_ROOM_NAMES = {
    "space": "{title}",
    "news": "{title} — новости",
    "class": "{title} — чат класса",
    "parents": "{title} — родители",
    "meeting": "{title} — родительское собрание",
}


async def _room_names(readers: list[User], class_id: str) -> dict[str, tuple[str, str]]:
    """kind -> (room ID, name) of each of a class's rooms, as the first reader in it sees them."""
    names = {}
    for kind in CLASS_ROOM_NAMES:
        room_id = await readers[0].resolve(f"#{kind}-{class_id}:{SERVER}")
        for reader in readers:
            name = await reader.call("GET", f"/rooms/{room_id}/state/m.room.name/")
            if name.status == 200:
                names[kind] = (room_id, name.body["name"])
                break
    return names


async def test_promoted_class_keeps_its_rooms_members_and_history(
    school: School, tmp_path: Path
) -> None:
    """Next year's roster keeps 5a's sourcedId and calls it 6А: the same rooms, renamed."""
    teacher = await school.login(first(school.roster.teachers["5a"]))
    pupil = await school.login(pupils(school, "5a")[0])
    guardian = await school.login(first(school.roster.guardians_of(pupils(school, "5a")[0])))
    readers = [teacher, guardian]
    before = await _room_names(readers, "5a")
    class_chat = before["class"][0]
    members = await teacher.members(class_chat)
    sent = await pupil.send_text(class_chat, "последний урок в пятом классе")
    assert sent.status == 200, sent
    roster = copy_roster(tmp_path / "roster")
    _edit_csv(roster / "classes.csv", _set_cell("title", "6А"))  # line 2 is 5a
    try:
        sferumctl("roster", "import", str(school.deployment.dir), str(roster))
        report = school.deployment.reconcile()
        assert report["failures"] == 0, report
        after = await _room_names(readers, "5a")
        assert after == {
            kind: (room_id, CLASS_ROOM_NAMES[kind].format(title="6А"))
            for kind, (room_id, _) in before.items()
        }
        assert after["class"][1] == "6А — чат класса"
        topic = await teacher.call("GET", f"/rooms/{class_chat}/state/m.room.topic/")
        assert topic.body["topic"] == "Ученики и учителя: 6А", topic
        assert await teacher.members(class_chat) == members
        old = await pupil.call("GET", f"/rooms/{class_chat}/event/{sent.body['event_id']}")
        assert old.status == 200 and old.body["content"]["body"] == "последний урок в пятом классе"
    finally:
        sferumctl("roster", "import", str(school.deployment.dir), str(demo_roster_folder()))
        school.deployment.reconcile()
    restored = await _room_names(readers, "5a")
    assert restored == {
        kind: (room_id, CLASS_ROOM_NAMES[kind].format(title="5А"))
        for kind, (room_id, _) in before.items()
    }


# -- the platform upgrades a room ------------------------------------------------------------


async def _state(user: User, room_id: str, event_type: str, key: str = "") -> Reply:
    return await user.call("GET", f"/rooms/{room_id}/state/{event_type}/{key}")


async def test_only_the_platform_upgrades_a_room_and_the_new_room_is_provisioned(
    school: School,
) -> None:
    """An upgraded lesson keeps its alias, kind, widgets, space links and members; the old
    one keeps its history under the same rules. (It cannot be put back: it need not be.)"""
    teacher = await school.login(first(school.roster.teachers["5a-eng1"]))
    old = await teacher.resolve(school.alias("lesson", "5a-eng1"))
    create = await _state(teacher, old, "m.room.create")
    version = create.body.get("room_version", "1")
    refused = await teacher.call("POST", f"/rooms/{old}/upgrade", {"new_version": version})
    assert refused.status == 403, refused
    members = await teacher.members(old)
    old_widget = await _state(teacher, old, "im.vector.modular.widgets", "ru.sferum.call")
    sent = await teacher.send_text(old, "до обновления комнаты")
    assert sent.status == 200, sent
    bot = User(
        school.deployment.base_url, f"@sferum:{SERVER}", school.deployment.secrets["as_token"]
    )
    upgraded = await bot.call("POST", f"/rooms/{old}/upgrade", {"new_version": version})
    assert upgraded.status == 200, upgraded
    new = upgraded.body["replacement_room"]
    for _ in range(100):  # the tombstone's reconcile joins the members
        if (await _state(teacher, new, "ru.sferum.room")).status == 200:
            break
        await asyncio.sleep(0.2)
    report = school.deployment.reconcile()
    assert report["failures"] == 0, report
    assert await teacher.resolve(school.alias("lesson", "5a-eng1")) == new
    assert await teacher.members(new) == members
    kind = await _state(teacher, new, "ru.sferum.room")
    assert kind.body["kind"] == "lesson" and kind.body["class"] == "5a-eng1", kind
    widget = await _state(teacher, new, "im.vector.modular.widgets", "ru.sferum.call")
    assert widget.body == json.loads(json.dumps(old_widget.body).replace(old, new)), widget
    space = await teacher.resolve(school.alias("school", "school-1"))  # a subject group's
    assert (await _state(teacher, new, "m.space.parent", space)).status == 200
    assert (await _state(teacher, space, "m.space.child", new)).body.get("via")
    assert (await _state(teacher, space, "m.space.child", old)).body == {}
    # the old room: its history readable, its rules as before
    history = await teacher.call("GET", f"/rooms/{old}/event/{sent.body['event_id']}")
    assert history.status == 200, history
    renamed = await teacher.put_state(old, "m.room.name", {"name": "Мой урок"})
    assert renamed.status == 403, renamed


async def test_sferumctl_upgrades_a_provisioned_room_and_carries_its_pins(
    school: School,
) -> None:
    """`sferumctl rooms upgrade`: the platform upgrades 6Б's class chat as its bot; the new
    room gets a copy of the pinned post, pinned. (An upgrade is not put back: it need not be.)
    A room the platform did not make, an unknown room and an unknown version are refused."""
    teacher = await school.login(first(school.roster.teachers["6b"]))
    alias = school.alias("class", "6b")
    old = await teacher.resolve(alias)
    post = await teacher.send_text(old, "Памятка на учебный год")
    assert post.status == 200, post
    pinned = await teacher.put_state(
        old, "m.room.pinned_events", {"pinned": [post.body["event_id"]]}
    )
    assert pinned.status == 200, pinned
    group = await teacher.create_room(name="Кружок", preset="private_chat")
    assert group.status == 200, group
    folder = str(school.deployment.dir)
    for room, version, errcode in (
        (f"#nope:{SERVER}", [], "M_NOT_FOUND"),
        (group.body["room_id"], [], "M_INVALID_PARAM"),
        (alias, ["--version", "99"], "M_UNSUPPORTED_ROOM_VERSION"),
    ):
        refused = sferumctl("rooms", "upgrade", folder, room, *version, check=False)
        assert refused.returncode == 1 and errcode in refused.stderr, refused
    members = await teacher.members(old)
    version = (await _state(teacher, old, "m.room.create")).body.get("room_version", "1")
    done = sferumctl("rooms", "upgrade", folder, alias, "--version", version)
    new = done.stdout.split(" is now ")[1].split()[0]
    assert done.stdout.startswith(f"class 6b: {old} is now {new} (room version {version})")
    for _ in range(100):  # the tombstone's reconcile joins the members
        if (await _state(teacher, new, "m.room.pinned_events")).status == 200:
            break
        await asyncio.sleep(0.2)
    report = school.deployment.reconcile()
    assert report["failures"] == 0, report
    assert await teacher.resolve(alias) == new
    assert await teacher.members(new) == members
    [copy_id] = (await _state(teacher, new, "m.room.pinned_events")).body["pinned"]
    copy = await teacher.call("GET", f"/rooms/{new}/event/{copy_id}")
    assert copy.body["sender"] == f"@sferum:{SERVER}", copy
    assert copy.body["content"]["body"].endswith(": Памятка на учебный год"), copy
    assert copy.body["content"]["ru.sferum.pin_of"]["event_id"] == post.body["event_id"]
    again = sferumctl("rooms", "upgrade", folder, old, check=False)
    assert again.returncode == 1 and f"upgrade its replacement {new}" in again.stderr, again


# -- a class's year ends -----------------------------------------------------------------------


def _end_class(roster: Path, class_id: str, last_day: date, moved: str, to: str) -> None:
    """Every enrollment of `class_id` ends on `last_day`; `moved` goes on in class `to`."""

    def edit(rows: list[list[str]]) -> None:
        header = rows[0]
        cls, end = header.index("classSourcedId"), header.index("endDate")
        for row in rows[1:]:
            if row[cls] == class_id:
                row[end] = last_day.isoformat()
        row = dict.fromkeys(header, "")
        row.update(
            sourcedId=f"e-{to}-{moved}",
            classSourcedId=to,
            schoolSourcedId="school-1",
            userSourcedId=moved,
            role="student",
            primary="false",
        )
        rows.append([row[name] for name in header])

    _edit_csv(roster / "enrollments.csv", edit)


async def test_a_class_whose_year_ended_is_archived_read_only_and_its_leavers_shut(
    school: School, tmp_path: Path
) -> None:
    """6Б's enrollments ended: one pupil goes on in 5А, the others have left. 6Б's rooms stay,
    read-only, for who is still at school; the leavers' accounts are shut. The shipped roster
    puts everything back."""
    moved, leaver = pupils(school, "6b")[0], pupils(school, "6b")[1]
    staying_teacher = "t-3"  # teaches 5А too
    assert staying_teacher in school.roster.teachers["6b"] | school.roster.teachers["5a"]
    moved_user, leaver_user = await school.login(moved), await school.login(leaver)
    teacher = await school.login(staying_teacher)
    chat = await teacher.resolve(school.alias("class", "6b"))
    roster = copy_roster(tmp_path / "roster")
    _end_class(roster, "6b", today() - timedelta(days=2), moved, "5a")
    try:
        sferumctl("roster", "import", str(school.deployment.dir), str(roster))
        report = school.deployment.reconcile()
        assert report["failures"] == 0, report
        levels = (await _state(teacher, chat, "m.room.power_levels")).body
        assert levels["events_default"] == levels["state_default"] == 100, levels
        name = (await _state(teacher, chat, "m.room.name")).body["name"]
        assert name.endswith("(архив)"), name
        assert {school.user_id(moved), school.user_id(staying_teacher)} <= await teacher.members(
            chat
        )
        assert school.user_id(leaver) not in await teacher.members(chat)
        for user in (moved_user, teacher):
            refused = await user.send_text(chat, "можно написать?")
            assert refused.status == 403, refused
        shut = await leaver_user.call("GET", "/joined_rooms")
        assert (shut.status, shut.body["errcode"]) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT"), shut
        assert await moved_user.resolve(school.alias("class", "5a")) in (
            await moved_user.joined_rooms()
        )
    finally:
        sferumctl("roster", "import", str(school.deployment.dir), str(demo_roster_folder()))
        school.deployment.reconcile()
    again = await moved_user.send_text(chat, "снова 6Б")
    assert again.status == 200, again
    assert (await leaver_user.call("GET", "/joined_rooms")).status == 200


# -- malformed rosters change nothing ---------------------------------------------------------


def _edit_csv(path: Path, edit: Any) -> None:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    edit(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def _drop_column(name: str) -> Any:
    def edit(rows: list[list[str]]) -> None:
        index = rows[0].index(name)
        for row in rows:
            del row[index]

    return edit


def _set_cell(column: str, value: str, line: int = 2) -> Any:
    def edit(rows: list[list[str]]) -> None:
        rows[line - 1][rows[0].index(column)] = value

    return edit


def _duplicate_row(rows: list[list[str]]) -> None:
    rows.append(list(rows[1]))


MALFORMED = {
    "missing-column": ("users.csv", _drop_column("familyName"), r"users\.csv:1:\d+:"),
    "unknown-reference": (
        "enrollments.csv",
        _set_cell("classSourcedId", "no-such-class"),
        r"enrollments\.csv:2:\d+:",
    ),
    "bad-date": (
        "demographics.csv",
        _set_cell("birthDate", "2015-13-45"),
        r"demographics\.csv:2:\d+:",
    ),
    "duplicate-id": ("users.csv", _duplicate_row, r"users\.csv:\d+:\d+:"),
}


@pytest.mark.parametrize("case", [*MALFORMED, "non-utf8", "empty-zip"])
def test_malformed_roster_is_refused_and_changes_nothing(
    school: School, tmp_path: Path, case: str
) -> None:
    import re
    import zipfile

    roster = copy_roster(tmp_path / "roster")
    if case == "non-utf8":
        users = roster / "users.csv"
        users.write_bytes(users.read_text(encoding="utf-8-sig").encode("cp1251"))
        source, pattern = roster, r"users\.csv:\d+:\d+:"
    elif case == "empty-zip":
        source = tmp_path / "empty.zip"
        zipfile.ZipFile(source, "w").close()
        pattern = r"empty\.zip:\d+:\d+:"
    else:
        file_name, edit, pattern = MALFORMED[case]
        _edit_csv(roster / file_name, edit)
        source = roster
    result = sferumctl("roster", "import", str(school.deployment.dir), str(source), check=False)
    assert result.returncode != 0, result.stdout
    assert re.search(pattern, result.stderr), result.stderr
    unchanged = sferumctl(
        "roster", "import", "--dry-run", str(school.deployment.dir), str(demo_roster_folder())
    )
    for line in unchanged.stdout.splitlines():
        cells = line.split()
        if len(cells) == 4 and cells[0] in ("people", "enrollments", "demographics"):
            assert cells[1:] == ["0", "0", "0"], unchanged.stdout


# -- people leave the school ------------------------------------------------------------------


def _without_pupil(source: Path, dest: Path, pupil: str, guardian: str) -> Path:
    """The roster without `pupil`; `guardian`, the pupil's only guardian, stays, childless."""
    dest.mkdir()
    for f in source.iterdir():
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if pupil not in line or line.startswith(guardian)]
        (dest / f.name).write_text("".join(kept).replace(f",{pupil},,", ",,,"), "utf-8")
    return dest


async def test_people_who_leave_the_school_lose_its_rooms(school: School, tmp_path: Path) -> None:
    pupil, guardian = "p-5a-4", "g-novikov"
    assert school.roster.guardians_of(pupil) == {guardian}
    pupil_user = await school.login(pupil)
    guardian_user = await school.login(guardian)
    teacher = await school.login(first(school.roster.teachers["5a"]))
    class_chat = await teacher.resolve(school.alias("class", "5a"))
    parents = await teacher.resolve(school.alias("parents", "5a"))
    roster = _without_pupil(demo_roster_folder(), tmp_path / "roster", pupil, guardian)
    sferumctl("roster", "import", str(school.deployment.dir), str(roster))
    report = school.deployment.reconcile()
    assert report["failures"] == 0, report
    try:
        # the pupil's account is shut: every request is refused
        shut = await pupil_user.call("GET", "/joined_rooms")
        assert (shut.status, shut.body["errcode"]) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT"), shut
        assert school.user_id(pupil) not in await teacher.members(class_chat)
        # the guardian whose last child left keeps the account but none of the school's rooms
        left = await guardian_user.joined_rooms()
        assert parents not in left
        assert not left & await teacher.joined_rooms(), left
    finally:
        sferumctl("roster", "import", str(school.deployment.dir), str(demo_roster_folder()))
        school.deployment.reconcile()
    back = await pupil_user.call("GET", "/joined_rooms")
    assert back.status == 200, back


# -- reports of messages reach the staff room ---------------------------------------------------


async def report_notice(reader: User, staff_room: str, event_id: str) -> dict[str, Any]:
    """The staff room's notice about a report of `event_id`, waited for (the module reads
    reports every 5 s in the demo school; 60 s is what the platform promises)."""
    path = f"/rooms/{urllib.parse.quote(staff_room)}/messages?dir=b&limit=50"
    for _ in range(120):
        reply = await reader.call("GET", path)
        assert reply.status == 200, reply
        for event in reply.body["chunk"]:
            content = event.get("content", {})
            if content.get(Key.REPORT, {}).get("event_id") == event_id:
                assert event["sender"] == f"@sferum:{SERVER}", event
                return dict(content)
        await asyncio.sleep(0.5)
    raise AssertionError(f"no notice of the report of {event_id} in the staff room")


async def report(user: User, room_id: str, event_id: str, reason: str) -> None:
    path = f"/rooms/{urllib.parse.quote(room_id)}/report/{urllib.parse.quote(event_id)}"
    reply = await user.call("POST", path, {"reason": reason, "score": -100})
    assert reply.status == 200, reply


async def test_reports_reach_the_staff_room_with_the_text_only_where_staff_read(
    school: School,
) -> None:
    staff = await school.login(school.roster.of_role("administrator")[0])
    staff_room = await staff.resolve(f"#staff-school-1:{SERVER}")

    # A pupil reports a classmate's message in the class chat: the staff read it there.
    reporter, author = pupils(school, "5a")[:2]
    author_user, reporter_user = await school.login(author), await school.login(reporter)
    class_chat = await author_user.resolve(school.alias("class", "5a"))
    sent = await author_user.send_text(class_chat, "Ты дурак, Артём")
    assert sent.status == 200, sent
    await report(reporter_user, class_chat, sent.body["event_id"], "обзывается")

    # A guardian reports a teacher's message in their direct chat: the staff do not read it.
    # (Both reports are made before the staff room is read: one pass of the check posts both.)
    teacher = await school.login(first(school.roster.teachers["5a"]))
    guardian = await school.login(first(school.roster.guardians_of(reporter)))
    dm = await guardian.create_room(is_direct=True, invite=[teacher.user_id])
    assert dm.status == 200, dm
    dm_id = dm.body["room_id"]
    joined = await teacher.call("POST", f"/rooms/{urllib.parse.quote(dm_id)}/join", {})
    assert joined.status == 200, joined
    private = await teacher.send_text(dm_id, "Личное: оценки вашего сына")
    assert private.status == 200, private
    await report(guardian, dm_id, private.body["event_id"], "грубость")

    notice = await report_notice(staff, staff_room, sent.body["event_id"])
    assert notice["msgtype"] == "m.notice"
    assert notice[Key.REPORT] == {
        "report_id": notice[Key.REPORT]["report_id"],
        "room_id": class_chat,
        "event_id": sent.body["event_id"],
        "reporter": school.user_id(reporter),
        "sender": school.user_id(author),
    }
    body = notice["body"]
    assert body.startswith("Жалоба на сообщение") and "(ученик)" in body, body
    assert "Причина: обзывается" in body and "Сообщение: Ты дурак, Артём" in body, body
    assert f"https://matrix.to/#/{class_chat}/{sent.body['event_id']}" in body, body

    notice = await report_notice(staff, staff_room, private.body["event_id"])
    assert notice[Key.REPORT]["reporter"] == guardian.user_id
    assert "оценки вашего сына" not in notice["body"] + notice["formatted_body"]
    assert "Причина: грубость" in notice["body"] and "(родитель)" in notice["body"], notice
    assert "Текст сообщения не показан" in notice["body"], notice
