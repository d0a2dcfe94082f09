"""Verified accounts through the client API, as a newcomer's client registers (issue 3).

A linking code from `sferumctl link-codes` and a phone checked by SMS (the `file` gateway's
outbox) make an account linked to its roster person; each refusal leaves no account behind and
no code used up. Real Synapse on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
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
    out = sferumctl("link-codes", str(deployment.dir), "--person", person, "--format", "json",
                    *extra)
    codes = json.loads(out.stdout)["codes"]
    assert [c["person"] for c in codes] == [person]
    return str(codes[0]["code"])


def newcomer(deployment: Deployment) -> NewUser:
    return NewUser(deployment.base_url, deployment.dir / "sms-outbox.jsonl")


async def localpart_is_free(deployment: Deployment, localpart: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(
        f"{deployment.base_url}/_matrix/client/v3/register/available",
        params={"username": localpart},
    ) as response:
        return response.status == 200


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
    assert lines[0] == "person,name,code,expires"
    people = {line.split(",")[0] for line in lines[1:]}
    assert {"p-6b-1", "g-fyodorov"} <= people, people


def expire_code(deployment: Deployment, code: str) -> None:
    """Moves a code's expiry into the past, as time would (both the module's row and
    Synapse's token, which the module wrote together)."""
    statements = [
        ("UPDATE sferum_link_codes SET expires_ts = 1 WHERE code = ?", (code,)),
        ("UPDATE registration_tokens SET expiry_time = 1 WHERE token = ?", (code,)),
    ]
    if deployment.database == "sqlite":
        with sqlite3.connect(deployment.dir / "homeserver.db") as db:
            for sql, args in statements:
                db.execute(sql, args)
    else:
        for sql, (value,) in statements:
            subprocess.run(
                ["psql", deployment.database, "-c", sql.replace("?", f"'{value}'")], check=True
            )
