"""The closed space, attacked from inside and outside (issue 11), against real Synapse.

Each test is one way in that was found open: a printed password that outlived its card, a join
rule that skipped the contact rules, redactions that emptied the platform's state, aliases and
names that said too much. The demo school is the one every module shares; what a test changes
(a password, an account, a room's state) it puts back before it ends.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.integration.clients import Reply, User, fetch_media, login, upload_media
from tests.integration.conftest import SERVER, School
from tests.integration.harness import sferumctl

pytestmark = pytest.mark.integration

NEW_PASSWORD = "Новый пароль для школы 2027"


@pytest.fixture
def school(demo_school: School) -> School:
    return demo_school


async def anonymous(school: School, method: str, path: str, body: Any = None) -> Reply:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{school.deployment.base_url}{path}", json=body) as response,
    ):
        return Reply(response.status, await response.json(content_type=None) or {})


async def try_login(school: School, user_id: str, password: str) -> Reply:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
    }
    return await anonymous(school, "POST", "/_matrix/client/v3/login", body)


async def change_password(user: User, old: str, new: str) -> Reply:
    """/account/password as clients do it: user-interactive auth with the current password."""
    first = await user.call("POST", "/account/password", {"new_password": new})
    if first.status != 401:
        return first
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": old,
        "session": first.body.get("session"),
    }
    return await user.call(
        "POST", "/account/password", {"new_password": new, "logout_devices": False, "auth": auth}
    )


def reset_card(school: School, person: str) -> str:
    """`sferumctl accounts reset`: a new card password, which the other tests then sign in with."""
    out = sferumctl(
        "accounts", "reset", str(school.deployment.dir), "--person", person, "--format", "json"
    )
    [account] = json.loads(out.stdout)
    assert account["person"] == person and account["user_id"] == school.user_id(person)
    school.accounts[person]["password"] = account["password"]
    return str(account["password"])


@pytest.fixture
def card_holder(school: School) -> Iterator[str]:
    """A pupil of 6Б whose card the test plays with; a fresh card afterwards, whatever it did."""
    person = "p-6b-4"
    try:
        yield person
    finally:
        reset_card(school, person)


# -- 1. the printed card password ----------------------------------------------------------


async def test_the_card_stops_working_once_the_password_is_changed(
    school: School, card_holder: str
) -> None:
    card = school.accounts[card_holder]["password"]
    pupil = await school.login(card_holder)
    changed = await change_password(pupil, card, NEW_PASSWORD)
    assert changed.status == 200, changed
    refused = await try_login(school, pupil.user_id, card)
    assert refused.status == 403 and refused.body["errcode"] == "M_FORBIDDEN", refused
    # Nor does the card pass the password check of a later change (the way to lock a pupil out).
    again = await change_password(pupil, card, "ещё один пароль для захвата")
    assert again.status == 401 and again.body.get("errcode") == "M_FORBIDDEN", again
    assert (await try_login(school, pupil.user_id, NEW_PASSWORD)).status == 200


async def test_an_expired_card_no_longer_signs_in(school: School, card_holder: str) -> None:
    user_id = school.user_id(card_holder)
    card = school.accounts[card_holder]["password"]
    assert (await try_login(school, user_id, card)).status == 200
    school.deployment.sql(
        "UPDATE sferum_credentials SET issued_ts = 1 WHERE user_id = ?", user_id
    )  # issued at the epoch: long past any expiry
    refused = await try_login(school, user_id, card)
    assert refused.status == 403, refused
    assert school.deployment.sql(
        "SELECT count(*) FROM sferum_credentials WHERE user_id = ?", user_id
    ) == [(0,)]


async def test_a_reset_takes_the_account_back_from_whoever_changed_its_password(
    school: School, card_holder: str
) -> None:
    """The card was taken: the thief set a password. The school resets: the thief is out."""
    card = school.accounts[card_holder]["password"]
    thief = await school.login(card_holder)
    assert (await change_password(thief, card, NEW_PASSWORD)).status == 200
    new_card = reset_card(school, card_holder)
    assert new_card != card
    whoami = await thief.call("GET", "/account/whoami")
    assert whoami.status == 401, whoami  # every session of the account is signed out
    assert (await try_login(school, thief.user_id, NEW_PASSWORD)).status == 403
    assert (await try_login(school, thief.user_id, card)).status == 403
    assert (await try_login(school, thief.user_id, new_card)).status == 200


async def test_a_reset_refuses_people_without_an_account(
    school: School, capsys: pytest.CaptureFixture[str]
) -> None:
    out = sferumctl(
        "accounts", "reset", str(school.deployment.dir), "--person", "nobody", check=False
    )
    assert out.returncode == 1, out
    assert "nobody" in out.stderr and "no account" in out.stderr, out.stderr


async def test_deactivation_takes_the_card_away(school: School) -> None:
    """An operator deactivates a pupil's account and brings it back: the old card is void."""
    person = "p-6b-3"
    user_id = school.user_id(person)
    card = school.accounts[person]["password"]
    operator_id = school.deployment.register_unlinked("operator", "operator-password", admin=True)
    operator = await login(school.deployment.base_url, operator_id, "operator-password")
    quoted = urllib.parse.quote(user_id)
    try:
        deactivated = await operator.call_admin("POST", f"/v1/deactivate/{quoted}", {})
        assert deactivated.status == 200, deactivated
        assert school.deployment.sql(
            "SELECT count(*) FROM sferum_credentials WHERE user_id = ?", user_id
        ) == [(0,)]
        back = await operator.call_admin("PUT", f"/v2/users/{quoted}", {"deactivated": False})
        assert back.status == 200, back
        assert (await try_login(school, user_id, card)).status == 403
    finally:
        await operator.call_admin("PUT", f"/v2/users/{quoted}", {"deactivated": False})
        reset_card(school, person)
        school.deployment.reconcile()  # back into the rooms deactivation took the pupil out of


# -- 2. join rules that let people nobody invited in ----------------------------------------


async def test_a_guardian_cannot_open_her_dm_to_another_class(school: School) -> None:
    guardian_person, child = "g-kozlova", "p-6b-1"  # 6Б's family
    guardian = await school.login(guardian_person)
    dm = await guardian.create_room(is_direct=True, invite=[school.user_id(child)])
    assert dm.status == 200, dm
    room_id = dm.body["room_id"]
    news_5a = await guardian.resolve(school.alias("news", "5a"))
    for rule in ("restricted", "knock_restricted"):
        opened = await guardian.put_state(
            room_id,
            "m.room.join_rules",
            {"join_rule": rule, "allow": [{"type": "m.room_membership", "room_id": news_5a}]},
        )
        assert opened.status == 403, (rule, opened)
        assert opened.reason == "ru.sferum.no_public_rooms", opened
    for rule in ("knock", "public"):
        opened = await guardian.put_state(room_id, "m.room.join_rules", {"join_rule": rule})
        assert opened.status == 403, (rule, opened)
    pupil_5a = await school.login("p-5a-1")
    joined = await pupil_5a.call("POST", f"/rooms/{urllib.parse.quote(room_id)}/join", {})
    assert joined.status == 403, joined


async def test_no_room_is_created_open_to_another_room(school: School) -> None:
    teacher = await school.login("t-1")
    class_chat = await teacher.resolve(school.alias("class", "5a"))
    for rule in ("restricted", "knock_restricted", "knock"):
        created = await teacher.create_room(
            name="Открытая группа",
            initial_state=[
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {
                        "join_rule": rule,
                        "allow": [{"type": "m.room_membership", "room_id": class_chat}],
                    },
                }
            ],
        )
        assert created.status == 403 and created.reason == "ru.sferum.no_public_rooms", created


# -- 3. redactions of the platform's state --------------------------------------------------


async def state_ids(user: User, room_id: str) -> dict[tuple[str, str], str]:
    reply = await user.call("GET", f"/rooms/{urllib.parse.quote(room_id)}/state")
    assert reply.status == 200, reply
    events: list[dict[str, Any]] = reply.body  # type: ignore[assignment]
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def test_a_teacher_cannot_redact_the_platforms_state(school: School) -> None:
    teacher = await school.login("t-1")  # 5А's class teacher: a moderator, who may redact
    class_chat = await teacher.resolve(school.alias("class", "5a"))
    space = await teacher.resolve(school.alias("space", "5a"))
    chat_state, space_state = await state_ids(teacher, class_chat), await state_ids(teacher, space)
    pupil = school.user_id("p-5a-1")
    targets = [
        (class_chat, chat_state[("ru.sferum.room", "")]),
        (class_chat, chat_state[("m.room.name", "")]),
        (class_chat, chat_state[("m.room.power_levels", "")]),
        (class_chat, chat_state[("m.space.parent", space)]),
        (class_chat, chat_state[("m.room.member", pupil)]),
        (space, space_state[("m.space.child", class_chat)]),
    ]
    targets += [
        (class_chat, event_id)
        for (kind, _), event_id in chat_state.items()
        if kind == "im.vector.modular.widgets"
    ]
    for n, (room_id, event_id) in enumerate(targets):
        redacted = await teacher.call(
            "PUT", f"/rooms/{urllib.parse.quote(room_id)}/redact/{event_id}/attack{n}", {}
        )
        assert redacted.status == 403, (event_id, redacted)
        assert redacted.reason == "ru.sferum.protected_state", redacted


async def test_the_reconcile_repairs_emptied_state(school: School) -> None:
    """State emptied by any means (an old redaction, an operator) is put back, not only state
    that is missing."""
    bot = User(
        school.deployment.base_url, f"@sferum:{SERVER}", school.deployment.secrets["as_token"]
    )
    space = await bot.resolve(school.alias("space", "5a"))
    class_chat = await bot.resolve(school.alias("class", "5a"))
    for room_id, kind, key, content in (
        (space, "m.space.child", class_chat, {}),
        (class_chat, "m.space.parent", space, {}),
        (class_chat, "m.room.name", "", {"name": ""}),
    ):
        emptied = await bot.put_state(room_id, kind, content, key)
        assert emptied.status == 200, emptied
    report = school.deployment.reconcile()
    assert report["failures"] == 0
    child = await bot.call("GET", f"/rooms/{space}/state/m.space.child/{class_chat}")
    parent = await bot.call("GET", f"/rooms/{class_chat}/state/m.space.parent/{space}")
    name = await bot.call("GET", f"/rooms/{class_chat}/state/m.room.name/")
    assert child.body.get("via") == [SERVER], child
    assert parent.body.get("via") == [SERVER] and parent.body.get("canonical") is True, parent
    assert name.body.get("name"), name


# -- 6. what an outsider learns -------------------------------------------------------------


async def test_an_outsider_learns_nothing_of_the_families(school: School) -> None:
    outsider_id = school.deployment.register_unlinked("outsider", "outsider-password")
    outsider = await login(school.deployment.base_url, outsider_id, "outsider-password")
    for person in ("p-5a-1", "p-6b-2"):
        alias = urllib.parse.quote(f"#diary-{person}:{SERVER}")
        found = await outsider.call("GET", f"/directory/room/{alias}")
        assert found.status == 404, found
    # Whether a username is taken is not told either, to anyone.
    for localpart in ("volkov.artyom", "nobody.at.all"):
        free = await anonymous(
            school, "GET", f"/_matrix/client/v3/register/available?username={localpart}"
        )
        assert free.status == 200 and free.body == {"available": True}, (localpart, free)


async def test_directory_search_does_not_hint_at_hidden_people(school: School) -> None:
    """The Kozlovs are 6Б's family: a 5А pupil sees none of them, and no «there are more»."""
    pupil = await school.login("p-5a-1")
    found = await pupil.call(
        "POST", "/user_directory/search", {"search_term": "Козлов", "limit": 1}
    )
    assert found.status == 200, found
    assert found.body == {"limited": False, "results": []}, found


# -- 7. misleading refusals and borrowed badges ---------------------------------------------


async def test_a_refused_dm_leaves_no_room_and_says_why(school: School) -> None:
    pupil = await school.login("p-5a-1")
    before = await pupil.joined_rooms()
    stranger = school.user_id("g-kozlova")  # a parent of 6Б: not the pupil's to contact
    created = await pupil.create_room(is_direct=True, invite=[stranger])
    assert created.status == 403, created
    assert created.reason == "ru.sferum.not_related", created
    assert "Invites have been disabled" not in created.body.get("error", "")
    assert await pupil.joined_rooms() == before


async def test_nobody_names_a_room_with_the_teachers_badge(school: School) -> None:
    pupil, classmate = await school.login("p-5a-1"), school.user_id("p-5a-2")
    dm = await pupil.create_room(is_direct=True, invite=[classmate])
    assert dm.status == 200, dm
    for name in ("Петров Алексей Николаевич 🎓", "Учитель 👨‍🎓", "🎓"):
        named = await pupil.put_state(dm.body["room_id"], "m.room.name", {"name": name})
        assert named.status == 403 and named.reason == "ru.sferum.badge_reserved", named
    created = await pupil.create_room(
        is_direct=True, invite=[classmate], name="Иванова Марина Сергеевна 🎓"
    )
    assert created.status == 403 and created.reason == "ru.sferum.badge_reserved", created
    teacher = await school.login("t-1")
    group = await teacher.create_room(name="Кружок 🎓")
    assert group.status == 403 and group.reason == "ru.sferum.badge_reserved", group


# -- 6. files ---------------------------------------------------------------------------------


async def upload(user: User, data: bytes, content_type: str = "image/png") -> str:
    """Uploads a file as the user; its mxc:// URI."""
    uploaded = await upload_media(user, data, content_type=content_type)
    assert uploaded.status == 200, uploaded
    return str(uploaded.body["content_uri"])


# A 1×1 PNG: a photo a pupil posts in the class chat.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201e21b2c8b0000000049454e44ae426082"
)


async def test_a_photo_reaches_its_room_and_nobody_else(school: School) -> None:
    pupil = await school.login("p-5a-1")
    mxc = await upload(pupil, PNG)
    classmate, teacher = await school.login("p-5a-2"), await school.login("t-1")
    other_class = await school.login("p-6b-1")
    # (Localparts of accounts made here are unique across the modules sharing this school.)
    outsider_id = school.deployment.register_unlinked("photo-outsider", "outsider-password")
    outsider = await login(school.deployment.base_url, outsider_id, "outsider-password")
    assert await fetch_media(pupil, mxc) == 200  # the uploader, before posting it anywhere
    assert await fetch_media(classmate, mxc) == 404
    class_chat = await pupil.resolve(school.alias("class", "5a"))
    sent = await pupil.call(
        "PUT",
        f"/rooms/{urllib.parse.quote(class_chat)}/send/m.room.message/photo1",
        {"msgtype": "m.image", "body": "photo.png", "url": mxc},
    )
    assert sent.status == 200, sent
    for member in (classmate, teacher):
        assert await fetch_media(member, mxc) == 200
        assert await fetch_media(member, mxc, thumbnail=True) == 200
    for stranger in (other_class, outsider):
        assert await fetch_media(stranger, mxc) == 404
        assert await fetch_media(stranger, mxc, thumbnail=True) == 404


# -- 7. photos --------------------------------------------------------------------------------


async def set_avatar(user: User, url: str) -> Reply:
    path = f"/profile/{urllib.parse.quote(user.user_id)}/avatar_url"
    return await user.call("PUT", path, {"avatar_url": url})


async def member_avatar(user: User, room_id: str, user_id: str) -> Any:
    quote = urllib.parse.quote
    path = f"/rooms/{quote(room_id)}/state/m.room.member/{quote(user_id)}"
    member = await user.call("GET", path)
    assert member.status == 200, member
    return member.body.get("avatar_url")


async def shows_avatar(user: User, room_id: str, user_id: str, url: str | None) -> bool:
    """Synapse carries a new global photo into member events in a task of its own: waits for it
    (at most 30 s)."""
    for _ in range(60):
        if await member_avatar(user, room_id, user_id) == url:
            return True
        await asyncio.sleep(0.5)
    return False


async def test_a_pupil_wears_her_own_photo_and_nobody_elses(school: School) -> None:
    pupil, classmate = await school.login("p-5a-3"), await school.login("p-5a-2")
    teacher, other_family = await school.login("t-1"), await school.login("g-kozlova")
    class_chat = await pupil.resolve(school.alias("class", "5a"))
    own, second = await upload(pupil, PNG), await upload(pupil, PNG + b"\0")
    teachers = await upload(teacher, PNG)
    try:
        assert (await set_avatar(pupil, own)).status == 200
        assert await shows_avatar(classmate, class_chat, pupil.user_id, own)
        assert await fetch_media(classmate, own) == 200  # the class sees the photo
        assert await fetch_media(other_family, own) == 404  # no room, no contact: not hers to see

        taken = await set_avatar(pupil, teachers)
        assert taken.status == 403 and taken.reason == "ru.sferum.avatar_not_own", taken
        remote = await set_avatar(pupil, "mxc://partner.example/someone")
        assert remote.status == 403 and remote.reason == "ru.sferum.avatar_not_local", remote

        # A per-room photo, even one's own, gives way to the profile's; another's too.
        for per_room in (second, teachers):
            sent = await pupil.put_state(
                class_chat,
                "m.room.member",
                {"membership": "join", "avatar_url": per_room},
                key=pupil.user_id,
            )
            assert sent.status == 200, sent
            assert await member_avatar(classmate, class_chat, pupil.user_id) == own
        assert await fetch_media(classmate, teachers) == 404  # never noted in the class chat

        too_large = await upload(pupil, PNG + bytes(5 * 1024 * 1024))
        not_an_image = await upload(pupil, b"%PDF-1.4 not a photo", "application/pdf")
        for refused in (too_large, not_an_image):
            answer = await set_avatar(pupil, refused)
            assert answer.status == 403 and answer.body["errcode"] == "M_FORBIDDEN", answer
            assert answer.body["error"] == "This avatar is not allowed", answer
    finally:
        assert (await set_avatar(pupil, "")).status == 200
        assert await shows_avatar(classmate, class_chat, pupil.user_id, None)
