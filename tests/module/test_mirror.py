"""What a mirrored school-news post looks like in a class news room."""

from types import SimpleNamespace
from typing import Any

from sferum_shared.vocabulary import Key
from synapse_sferum.mirror import mirrored_content


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
