"""Verified accounts through the client API, as a newcomer's client registers (issue 3).

A linking code from `sferumctl link-codes` and a phone checked by SMS (the `file` gateway's
outbox) make an account linked to its roster person; each refusal leaves no account behind and
no code used up. Real Synapse on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.integration.clients import NEWCOMER_PASSWORD, NewUser, login
from tests.integration.conftest import make_deployment
from tests.integration.harness import (
    TOO_YOUNG,
    Deployment,
    roster_with_a_four_year_old,
    sferumctl,
)

pytestmark = pytest.mark.integration

SERVER = "reg.test"
GUARDIAN_PHONE = "+7 903 123-45-01"  # g-volkova's number in the roster; her son is p-5a-1


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    tmp = tmp_path_factory.mktemp(f"reg-{request.param}")
    roster = roster_with_a_four_year_old(tmp / "roster")
    deployment = make_deployment(tmp, request.param, postgres, SERVER)
    deployment.init()
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(roster))
        yield deployment
    finally:
        deployment.stop()


def link_code(deployment: Deployment, person: str, *extra: str) -> str:
    out = sferumctl(
        "link-codes", str(deployment.dir), "--person", person, "--format", "json", *extra
    )
    codes = json.loads(out.stdout)["codes"]
    assert [c["person"] for c in codes] == [person]
    return str(codes[0]["code"])


def newcomer(deployment: Deployment) -> NewUser:
    return NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl")


async def localpart_is_free(deployment: Deployment, localpart: str) -> bool:
    """No account of that name (asked of the database: /register/available tells nobody)."""
    taken = deployment.sql("SELECT 1 FROM users WHERE name = ?", f"@{localpart}:{SERVER}")
    return not taken


async def register(deployment: Deployment, code: str, phone: str) -> dict[str, str]:
    done = await newcomer(deployment).complete(code, phone)
    return {"user_id": done.body["user_id"], "access_token": done.body["access_token"]}


async def test_code_and_phone_make_an_account_linked_and_named_from_the_roster(
    deployment: Deployment,
) -> None:
    code = link_code(deployment, "g-morozova")
    account = await register(deployment, code, "+7 916 555-00-01")
    assert account["user_id"] == f"@morozova.ekaterina:{SERVER}"
    user = await login(deployment.base_url, account["user_id"], NEWCOMER_PASSWORD)
    profile = await user.call("GET", f"/profile/{account['user_id']}")
    assert profile.body["displayname"] == "Екатерина Павловна Морозова", profile
    threepids = await user.call("GET", "/account/3pid")
    assert threepids.body["threepids"][0]["address"] == "79165550001", threepids
    # Linked: the platform puts the parent into the class's parents chat.
    deployment.reconcile()
    parents_chat = await user.resolve(f"#parents-5a:{SERVER}")
    assert parents_chat in await user.joined_rooms()


async def test_a_used_code_is_refused_at_its_stage(deployment: Deployment) -> None:
    code = link_code(deployment, "g-novikov")
    await register(deployment, code, "+7 916 555-00-02")
    again = newcomer(deployment)
    refused = await again.enter_code(code)
    assert refused.status == 401 and refused.body["errcode"] == "M_UNAUTHORIZED", refused
    assert "m.login.registration_token" not in refused.body.get("completed", [])


async def test_an_expired_code_is_refused_and_makes_no_account(deployment: Deployment) -> None:
    code = link_code(deployment, "g-popova")
    expire_code(deployment, code)
    user = newcomer(deployment)
    refused = await user.enter_code(code)
    assert refused.status == 401 and refused.body["errcode"] == "M_UNAUTHORIZED", refused
    assert await localpart_is_free(deployment, "popova.yulia")


async def test_one_phone_one_account_and_the_refused_code_still_works(
    deployment: Deployment,
) -> None:
    await register(deployment, link_code(deployment, "g-volkov"), "+7 916 555-00-03")
    code = link_code(deployment, "g-kozlova")
    user = newcomer(deployment)
    await user.enter_code(code)
    taken = await user.ask_sms("+7 916 555-00-03")
    assert taken.status == 400 and taken.body["errcode"] == "M_THREEPID_IN_USE", taken
    # Nothing was used up: the same code registers with the parent's own phone.
    await register(deployment, code, "+7 916 555-00-04")


async def test_a_pupil_cannot_register_with_a_guardians_phone(deployment: Deployment) -> None:
    code = link_code(deployment, "p-5a-1")
    user = newcomer(deployment)
    await user.enter_code(code)
    submitted = await user.verify_phone(GUARDIAN_PHONE)
    assert submitted.status == 200, submitted
    refused = await user.finish()
    assert refused.status == 403 and refused.body["errcode"] == "M_THREEPID_DENIED", refused
    assert await localpart_is_free(deployment, "volkov.artyom")
    # Replaying the refused request is refused too, and the pupil goes on with his own phone.
    assert (await user.finish()).status != 200
    assert await localpart_is_free(deployment, "volkov.artyom")
    own = await user.verify_phone("+7 916 555-00-05")
    assert own.status == 200, own
    done = await user.finish()
    assert done.status == 200 and done.body["user_id"] == f"@volkov.artyom:{SERVER}", done


async def test_wrong_sms_codes_are_counted_then_refused(deployment: Deployment) -> None:
    user = newcomer(deployment)
    await user.enter_code(link_code(deployment, "g-kozlov"))
    asked = await user.ask_sms("+7 916 555-00-06")
    assert asked.status == 200, asked
    real = user.last_sms_code("+79165550006")
    not_it = "000000" if real != "000000" else "111111"
    wrong = await user.submit_sms(not_it)
    assert wrong.status == 200 and wrong.body["success"] is False, wrong
    assert wrong.body["errcode"] == "M_THREEPID_AUTH_FAILED", wrong
    assert wrong.body["ru.sferum.reason"] == "ru.sferum.sms_code_wrong"
    assert wrong.body["attempts_left"] == 4
    unchecked = await user.finish()
    assert unchecked.status == 401, unchecked
    for _ in range(4):
        await user.submit_sms(not_it)
    right = await user.submit_sms(real)
    assert right.body["ru.sferum.reason"] == "ru.sferum.sms_attempts_exhausted", right


def test_no_code_for_a_child_under_six_or_a_stranger(deployment: Deployment) -> None:
    young = sferumctl("link-codes", str(deployment.dir), "--person", TOO_YOUNG, check=False)
    assert young.returncode != 0
    assert "ru.sferum.too_young" in young.stderr, young.stderr
    stranger = sferumctl("link-codes", str(deployment.dir), "--person", "nobody", check=False)
    assert stranger.returncode != 0
    assert "ru.sferum.person_not_in_directory" in stranger.stderr, stranger.stderr


def test_a_class_gets_codes_for_everyone_without_an_account(deployment: Deployment) -> None:
    out = sferumctl("link-codes", str(deployment.dir), "--class", "6b", "--format", "csv")
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "person,name,code,expires,link"
    people = {line.split(",")[0] for line in lines[1:]}
    assert {"p-6b-1", "g-fyodorov"} <= people, people
    for line in lines[1:]:  # every code is also a link to the registration page
        code, link = line.split(",")[2], line.split(",")[4]
        assert link == f"{deployment.base_url}/join#{code}", line


def expire_code(deployment: Deployment, code: str) -> None:
    """Moves a code's expiry into the past, as time would (both the module's row and
    Synapse's token, which the module wrote together)."""
    deployment.sql("UPDATE sferum_link_codes SET expires_ts = 1 WHERE code = ?", code)
    deployment.sql("UPDATE registration_tokens SET expiry_time = 1 WHERE token = ?", code)


# -- attacks (issue 11) -------------------------------------------------------------------


async def test_a_burst_of_guesses_gets_the_attempts_and_no_more(deployment: Deployment) -> None:
    """Guesses sent all at once are counted one by one: five are judged, the rest refused,
    and the right code after them is refused too (the count is atomic in the database)."""
    user = newcomer(deployment)
    await user.enter_code(link_code(deployment, "g-lebedeva"))
    asked = await user.ask_sms("+7 916 555-00-21")
    assert asked.status == 200, asked
    real = user.last_sms_code("+79165550021")
    guesses = [f"{n:06}" for n in range(40) if f"{n:06}" != real][:30]
    answers = await asyncio.gather(*(user.submit_sms(guess) for guess in guesses))
    judged = [a for a in answers if a.body.get("ru.sferum.reason") == "ru.sferum.sms_code_wrong"]
    assert len(judged) <= 5, [a.body for a in answers]
    right = await user.submit_sms(real)
    assert right.body.get("success") is not True, right
    assert right.body["ru.sferum.reason"] == "ru.sferum.sms_attempts_exhausted", right


async def test_one_code_used_twice_at_once_makes_one_account_and_a_clear_refusal(
    deployment: Deployment,
) -> None:
    code = link_code(deployment, "g-fyodorov")
    first, second = newcomer(deployment), newcomer(deployment)
    for user, phone in ((first, "+7 916 555-00-22"), (second, "+7 916 555-00-23")):
        entered = await user.enter_code(code)
        assert entered.status == 401 and "m.login.registration_token" in entered.body["completed"]
        verified = await user.verify_phone(phone)
        assert verified.body.get("success") is True, verified
    done = await asyncio.gather(first.finish(), second.finish())
    assert sorted(d.status for d in done) == [200, 403], [d.body for d in done]
    refused = next(d for d in done if d.status != 200)
    assert refused.body.get("errcode") == "M_THREEPID_DENIED", refused  # Synapse's words
    made = next(d for d in done if d.status == 200)
    assert made.body["user_id"] == f"@fyodorov.roman:{SERVER}", made
    assert not await localpart_is_free(deployment, "fyodorov.roman")
    assert await localpart_is_free(deployment, "fyodorov.roman2")  # no second account


async def request_token(deployment: Deployment, body: object) -> tuple[int, dict[str, object]]:
    url = f"{deployment.base_url}/_matrix/client/v3/register/msisdn/requestToken"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status, await response.json(content_type=None) or {}


def outbox_lines(deployment: Deployment) -> int:
    outbox = deployment.dir / "sms-outbox.jsonl"
    return len(outbox.read_text(encoding="utf-8").splitlines()) if outbox.exists() else 0


@pytest.mark.parametrize(
    "change",
    [
        {"country": 7},
        {"phone_number": 79165550024},
        {"phone_number": ["+79165550024"]},
        {"send_attempt": "x"},
        {"send_attempt": None},
        {"client_secret": 5},
    ],
    ids=["country-number", "phone-number", "phone-list", "attempt-text", "attempt-null",
         "secret-number"],
)  # fmt: skip
async def test_mistyped_sms_requests_get_a_4xx_and_send_nothing(
    deployment: Deployment, change: dict[str, object]
) -> None:
    before = outbox_lines(deployment)
    body = {"client_secret": "s3cret", "country": "RU", "phone_number": "+7 916 555-00-24",
            "send_attempt": 1, **change}  # fmt: skip
    status, answer = await request_token(deployment, body)
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer.get("errcode"), str), answer
    assert outbox_lines(deployment) == before


async def test_the_phone_check_endpoints_answer_bad_input_with_a_4xx(
    deployment: Deployment,
) -> None:
    """What Synapse calls, called directly by whoever learnt the secret path."""
    from synapse_sferum.msisdn_path import msisdn_delegate_base

    base = deployment.base_url + msisdn_delegate_base(deployment.secrets["admin_api_secret"])
    api = f"{base}/_matrix/identity/api/v1"
    before = outbox_lines(deployment)
    bad_posts = [
        ("validate/msisdn/requestToken", b"not json"),
        ("validate/msisdn/requestToken", b"[1, 2]"),
        ("validate/msisdn/requestToken", b'{"client_secret": "s", "phone_number": {}}'),
        ("validate/msisdn/requestToken",
         b'{"client_secret": "s", "country": 7, "phone_number": "+79165550025",'
         b' "send_attempt": "x"}'),
        ("validate/msisdn/submitToken", b'{"sid": [], "client_secret": "s", "token": "1"}'),
        ("validate/msisdn/submitToken", b'{"sid": "nope", "client_secret": "s", "token": 1.5}'),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for path, raw in bad_posts:
            async with http.post(f"{api}/{path}", data=raw) as response:
                assert 400 <= response.status < 500, (path, raw, response.status)
        async with http.get(f"{api}/3pid/getValidated3pid?sid=&client_secret=") as response:
            assert 400 <= response.status < 500, response.status
    assert outbox_lines(deployment) == before
