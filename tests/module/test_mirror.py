"""What a mirrored school-news post looks like in a class news room."""

import sqlite3
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import Key
from synapse_sferum.mirror import mirrored_content
from synapse_sferum.roster.oneroster import parse_roster
from synapse_sferum.service import DirectoryService
from synapse_sferum.store.rooms import claim_mirror_txn, copies_among_txn, set_mirror_event_txn
from synapse_sferum.store.schema import prepare_schema_txn
from tests.module.conftest import TODAY, edited_roster, load_demo, sferum_config
from tests.sqlite_txn import Cursor


def test_copy_names_the_author_and_the_source_and_drops_relations() -> None:
    source: Any = SimpleNamespace(room_id="!news:s", event_id="$post", sender="@t:s")
    content = {
        "msgtype": "m.text",
        "body": "Линейка в 8:30",
        "format": "org.matrix.custom.html",
        "formatted_body": "Линейка в <b>8:30</b>",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
    }
    copy = mirrored_content(content, "Марина Сергеевна Иванова", source)
    assert copy["body"] == "Марина Сергеевна Иванова: Линейка в 8:30"
    assert copy["formatted_body"] == "<b>Марина Сергеевна Иванова</b>: Линейка в <b>8:30</b>"
    assert "m.relates_to" not in copy  # the thread root does not exist in the class room
    assert copy[Key.MIRROR_OF] == {"room_id": "!news:s", "event_id": "$post", "sender": "@t:s"}
    assert content["body"] == "Линейка в 8:30"  # the source is left as it was


def test_author_names_are_escaped_in_html() -> None:
    source: Any = SimpleNamespace(room_id="!news:s", event_id="$post", sender="@t:s")
    content = {"msgtype": "m.text", "body": "x", "formatted_body": "x"}
    copy = mirrored_content(content, "Ира <script>", source)
    assert copy["formatted_body"] == "<b>Ира &lt;script&gt;</b>: x"


def test_an_article_keeps_its_html_and_images() -> None:
    source: Any = SimpleNamespace(room_id="!news:s", event_id="$post", sender="@t:s")
    article = '<h1>Концерт</h1><ul><li>5а</li></ul><img src="mxc://s/photo">'
    content = {
        "msgtype": "m.text",
        "body": "# Концерт\n- 5а",
        "format": "org.matrix.custom.html",
        "formatted_body": article,
    }
    copy = mirrored_content(content, "Ирина", source)
    assert copy["formatted_body"] == f"<p><b>Ирина</b></p>{article}"
    assert copy["format"] == "org.matrix.custom.html"


def test_an_image_keeps_its_file_name_and_the_author_is_its_caption() -> None:
    source: Any = SimpleNamespace(room_id="!news:s", event_id="$post", sender="@t:s")
    image = {"msgtype": "m.image", "body": "photo.png", "url": "mxc://s/photo"}
    copy = mirrored_content(image, "Ирина", source)
    assert (copy["body"], copy["filename"], copy["url"]) == (
        "Ирина: photo.png",
        "photo.png",
        "mxc://s/photo",
    )
    captioned = {**image, "body": "Наш класс", "filename": "photo.png"}
    copy = mirrored_content(captioned, "Ирина", source)
    assert (copy["body"], copy["filename"]) == ("Ирина: Наш класс", "photo.png")


def test_copies_among_names_only_this_rooms_delivered_copies(database: sqlite3.Connection) -> None:
    txn: Any = Cursor(database)
    prepare_schema_txn(txn)
    for source, room, copy in (("$s1", "!a", "$c1"), ("$s1", "!b", "$b1"), ("$s2", "!a", None)):
        claim_mirror_txn(txn, source, room)
        if copy is not None:
            set_mirror_event_txn(txn, source, room, copy)
    assert copies_among_txn(txn, "!a", ["$own", "$c1", "$b1"]) == {"$c1"}
    assert copies_among_txn(txn, "!a", []) == set()


async def test_an_archived_classs_news_gets_no_more_school_news(
    api: Any, clock: Any, tmp_path: Path
) -> None:
    """School news (and its pins) reach the news rooms of running classes only: once 5А's
    every enrollment is over, its archived news room is left as it was."""
    directory = DirectoryService(api, sferum_config(), clock)
    await load_demo(directory)
    for class_id in ("5a", "6b"):
        await directory.record_room(RoomKey(RoomKind.CLASS_NEWS, class_id), f"!news-{class_id}")
    assert sorted(await directory.class_news_rooms("school-1")) == ["!news-5a", "!news-6b"]
    last_day = directory.today() - timedelta(days=1)

    def end_5a(name: str, text: str) -> str:
        if name != "enrollments.csv":
            return text
        return "".join(
            f"{line.rstrip()}{last_day.isoformat()}\n" if ",5a,school-1," in line else line
            for line in text.splitlines(keepends=True)
        )

    ended = edited_roster(tmp_path / "roster", end_5a)
    await directory.apply_import(parse_roster(ended, TODAY), dry_run=False)
    assert await directory.class_news_rooms("school-1") == ["!news-6b"]
