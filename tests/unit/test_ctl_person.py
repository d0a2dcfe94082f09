"""`sferumctl person`'s pure parts: the erase plan and the export zip's layout."""

from __future__ import annotations

import json

from sferum_shared.adminapi import PersonData
from synapse_sferum.ctl.person import KEPT, archive_entries, diary_alias, erase_plan

DATA = PersonData(
    person="p-5a-2",
    user_id="@morozova.sofia:school.test",
    tables={
        "sferum_people": [{"sourced_id": "p-5a-2", "given_name": "София"}],
        "sferum_links": [{"person_id": "p-5a-2", "msisdn": "79165551002"}],
        "sferum_polls": [{"event_id": "$poll", "creator": "@morozova.sofia:school.test"}],
        "sferum_quiet_schedules": [],
        "sferum_poll_votes": [{"origin_id": "$poll", "voter": "@morozova.sofia:school.test"}],
    },
    media=[{"media_id": "abcdefgh", "upload_name": "essay.txt"}],
    other_events={"m.reaction": 2, "org.matrix.msc3381.poll.response": 1, "m.sticker": 0},
)


def test_the_plan_lists_what_goes_and_what_stays_with_reasons() -> None:
    lines = erase_plan(DATA, ledger_entries=3)
    keep = lines.index("keep:")
    erased, kept = lines[:keep], lines[keep + 1 :]
    assert "  delete: 1 uploaded file(s)" in erased
    assert "  delete: 1 row(s) of sferum_people" in erased
    assert "  delete: 1 row(s) of sferum_links" in erased
    assert "  delete: 1 row(s) of sferum_poll_votes" in erased
    assert "  redact: 2 reaction(s)" in erased and "  redact: 1 poll vote(s)" in erased
    assert not any("sticker" in line for line in erased)
    assert not any("sferum_quiet_schedules" in line for line in lines)  # no rows, no line
    assert any(line.startswith("  1 row(s) of sferum_polls: ") for line in kept)
    assert "  3 diary ledger entr(ies) of their diary room" in kept
    assert [f"  {reason}" for reason in KEPT] == kept[-len(KEPT) :]
    assert any("source of truth" in line for line in kept)


def test_the_zip_has_one_place_for_each_part() -> None:
    entries = archive_entries(
        DATA,
        {"rooms/!r:school.test/events": b"{}", "user_data/profile": b"{}"},
        {"abcdefgh": b"my essay"},
        [{"item_key": "mark:1", "event_id": "$m"}],
        ["у человека нет аккаунта: выгрузки Synapse и файлов нет"],
    )
    assert sorted(entries) == [
        "README.txt",
        "diary/ledger.json",
        "media/abcdefgh",
        "media/index.json",
        "sferum/sferum_links.json",
        "sferum/sferum_people.json",
        "sferum/sferum_poll_votes.json",
        "sferum/sferum_polls.json",
        "sferum/sferum_quiet_schedules.json",
        "synapse/rooms/!r:school.test/events",
        "synapse/user_data/profile",
    ]
    readme = entries["README.txt"].decode()
    assert "p-5a-2" in readme and "@morozova.sofia:school.test" in readme
    assert "Внимание: у человека нет аккаунта: выгрузки Synapse и файлов нет" in readme
    assert json.loads(entries["sferum/sferum_people.json"])[0]["given_name"] == "София"
    assert entries["media/abcdefgh"] == b"my essay"


def test_a_pupils_diary_is_found_by_its_alias_scheme_name() -> None:
    assert diary_alias("p-5a-2") == "diary-p-5a-2"
