"""The OneRoster REST source against a real OneRoster 1.2 REST server (issue 4).

The server (tests/integration/oneroster_rest_server.py) serves the demo's diary folder (written
from `synapse_sferum/demo/`) as 1.2 JSON; the expected marks and homework are what the CSV source
makes of the same folder, so the REST and the CSV source agree item for item.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridges.diary.model import DiarySnapshot
from bridges.diary.sources.base import SourceUnavailable
from bridges.diary.sources.csvsource import OneRosterCsvSource
from bridges.diary.sources.rest import OneRosterRestSource, item_url
from synapse_sferum.roster.oneroster import parse_roster, parse_roster_zip
from tests.demo import noon, today
from tests.integration.harness import demo_diary_folder, demo_roster_folder
from tests.integration.oneroster_rest_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    OneRosterRestServer,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE = "oneroster-rest:demo"


@pytest.fixture
async def server() -> AsyncIterator[OneRosterRestServer]:
    server = OneRosterRestServer(demo_diary_folder())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def source(
    server: OneRosterRestServer, page_size: int = 100, timeout: float = 10.0
) -> OneRosterRestSource:
    return OneRosterRestSource(
        server.base_url,
        CLIENT_ID,
        CLIENT_SECRET,
        name=SOURCE,
        page_size=page_size,
        timeout=timeout,
    )


async def expected_from_csv(folder: Path) -> DiarySnapshot:
    """What the CSV source makes of the same folder."""
    return await OneRosterCsvSource(folder, SOURCE, clock=noon(today())).snapshot()


async def test_full_snapshot_equals_the_csv(server: OneRosterRestServer) -> None:
    snapshot = await source(server).snapshot()
    expected = await expected_from_csv(demo_diary_folder())
    assert snapshot.problems == () == expected.problems
    assert expected.marks and expected.homework
    assert snapshot.marks == expected.marks
    assert snapshot.homework == expected.homework
    assert snapshot.complete
    # the roster survives the trip CSV → 1.2 JSON → the 1.1 zip the module's admin API takes
    assert snapshot.roster_zip is not None
    roster = parse_roster_zip(snapshot.roster_zip, today(), "rest.zip")
    demo = parse_roster(demo_roster_folder(), today())
    assert expected.roster_zip is not None
    assert parse_roster_zip(expected.roster_zip, today()).people.upserts == demo.people.upserts
    for kind in ("orgs", "people", "demographics", "classes", "enrollments"):
        assert getattr(roster, kind).upserts.keys() == getattr(demo, kind).upserts.keys(), kind
    assert server.scopes == [
        "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly "
        "https://purl.imsglobal.org/spec/or/v1p2/scope/gradebook.readonly"
    ]


async def test_paging_with_small_pages(server: OneRosterRestServer) -> None:
    snapshot = await source(server, page_size=2).snapshot()
    assert snapshot.marks == (await expected_from_csv(demo_diary_folder())).marks
    results_pages = [r for r in server.requests if "/results?" in r]
    total = len(server.data["results"])
    assert len(results_pages) == (total + 1) // 2
    assert all("limit=2" in r for r in server.requests)


async def test_one_token_is_reused_then_renewed_after_expiry(server: OneRosterRestServer) -> None:
    rest = source(server)
    await rest.snapshot()
    await rest.snapshot()
    assert server.tokens_issued == 1
    server.revoke_tokens()  # the server forgets it early: 401, a new token, the GET once more
    await rest.snapshot()
    assert server.tokens_issued == 2
    server.token_lifetime = 1.0
    server.revoke_tokens()
    await rest.snapshot()  # gets a token that lives a second
    assert server.tokens_issued >= 3
    issued = server.tokens_issued
    await asyncio.sleep(1.1)  # expired by the source's own clock: renewed before the GET
    requests = len(server.requests)
    await rest.snapshot()
    assert server.tokens_issued > issued
    assert len(server.requests) - requests == 10  # no GET was refused on the way


async def test_wrong_secret_is_unavailable(server: OneRosterRestServer) -> None:
    rest = OneRosterRestSource(server.base_url, CLIENT_ID, "wrong", name=SOURCE)
    with pytest.raises(SourceUnavailable, match="client ID or secret is wrong"):
        await rest.snapshot()


async def test_server_error_is_unavailable(server: OneRosterRestServer) -> None:
    server.fail_status = 500
    with pytest.raises(SourceUnavailable, match=r"rostering/v1p2/orgs\?.*HTTP 500"):
        await source(server).snapshot()


async def test_timeout_is_unavailable(server: OneRosterRestServer) -> None:
    server.delay = 2.0
    with pytest.raises(SourceUnavailable, match=r"no answer within 0.5 s"):
        await source(server, timeout=0.5).snapshot()


async def test_server_gone_is_unavailable(server: OneRosterRestServer) -> None:
    await server.stop()
    with pytest.raises(SourceUnavailable, match=f"POST {server.token_url} failed"):
        await source(server).snapshot()


async def test_bad_item_is_one_problem_and_the_rest_is_delivered(
    server: OneRosterRestServer,
) -> None:
    good = await source(server).snapshot()
    bad_id = good.marks[0].source_id
    server.set_score(bad_id, 7.0)  # the lineItem allows 1..5
    server.data["results"].append({"sourcedId": "", "score": 5})  # no sourcedId at all
    snapshot = await source(server).snapshot()
    assert [(p.kind, p.where) for p in snapshot.problems] == [
        ("invalid", f"{item_url(server.base_url, 'results')} item {len(good.marks)}"),
        ("out_of_range", item_url(server.base_url, "results", bad_id)),
    ]
    assert snapshot.marks == good.marks[1:]
    assert snapshot.homework == good.homework


async def test_changed_and_deleted_results(server: OneRosterRestServer) -> None:
    rest = source(server)
    before = await rest.snapshot()
    first, second = before.marks[0], before.marks[1]
    server.set_score(first.source_id, None, text_score="4-")
    server.delete_result(second.source_id)
    after = await rest.snapshot()
    marks = {m.source_id: m for m in after.marks}
    assert marks[first.source_id].value == "4-"
    assert second.source_id not in marks
    assert len(after.marks) == len(before.marks) - 1


def test_demo_diary_is_a_full_folder() -> None:
    """The demo diary folder carries the roster too; the server needs both."""
    with (demo_diary_folder() / "users.csv").open(encoding="utf-8-sig") as f:
        assert any(row["role"] == "student" for row in csv.DictReader(f))
