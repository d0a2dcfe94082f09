"""How school news looks in class news: the author's line over an article, and the pins."""

from __future__ import annotations

import pytest

from sferum_shared.byline import byline_html
from synapse_sferum.policy.news import class_pins, pinned_ids

ARTICLE = '<h1>Весенний концерт</h1><ul><li>5а</li><li>6б</li></ul><img src="mxc://s/abc">'


@pytest.mark.parametrize(
    ("formatted_body", "article"),
    [
        # a short post: the name runs into the text
        ("Линейка в <b>8:30</b>", False),
        ('<img src="mxc://s/abc">', False),
        ("строка<br>строка", False),
        ('<a href="https://school.example/">сайт</a>', False),
        # an article: the name is a paragraph of its own, the blocks are left as they are
        (ARTICLE, True),
        ("<p>Раз</p><p>Два</p>", True),
        ("Итоги:<OL><li>первое</li></OL>", True),
        ("<blockquote>цитата</blockquote>", True),
        ("<pre>код</pre>", True),
        ("<table><tr><td>1</td></tr></table>", True),
        ("<details><summary>ещё</summary>текст</details>", True),
    ],
)
def test_byline(formatted_body: str, article: bool) -> None:
    byline = byline_html("Ирина", formatted_body)
    if article:
        assert byline == f"<p><b>Ирина</b></p>{formatted_body}"
    else:
        assert byline == f"<b>Ирина</b>: {formatted_body}"


@pytest.mark.parametrize(
    ("author", "expected"),
    [
        ("Ира <script>", "<p><b>Ира &lt;script&gt;</b></p><h2>x</h2>"),
        ("Ира & Co", "<p><b>Ира &amp; Co</b></p><h2>x</h2>"),
    ],
)
def test_the_name_is_text_never_markup(author: str, expected: str) -> None:
    assert byline_html(author, "<h2>x</h2>") == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"pinned": ["$a", "$b"]}, ["$a", "$b"]),
        ({"pinned": []}, []),
        ({}, []),  # unpinned by redacting the state
        ({"pinned": "$a"}, []),
        ({"pinned": ["$a", 7, None, "$b"]}, ["$a", "$b"]),
    ],
)
def test_pinned_ids(content: dict[str, object], expected: list[str]) -> None:
    assert pinned_ids(content) == expected


COPIES = {"$s1": "$c1", "$s2": "$c2", "$s3": "$c3"}


@pytest.mark.parametrize(
    ("school", "current", "mirrored", "expected"),
    [
        # the school pins a post: its copy is pinned
        (["$s1"], [], set(), ["$c1"]),
        # in the school's order, ahead of the class's own pins
        (["$s2", "$s1"], ["$own"], set(), ["$c2", "$c1", "$own"]),
        # a post with no copy here (sent before the class existed) is skipped
        (["$s1", "$old"], [], set(), ["$c1"]),
        # unpinned at school: the copy goes, the class's own pin stays
        ([], ["$c1", "$own"], {"$c1"}, ["$own"]),
        # a copy the school no longer pins goes, even one a teacher pinned by hand
        (["$s1"], ["$c2", "$c1", "$own"], {"$c1", "$c2"}, ["$c1", "$own"]),
        # reordered at school, own pins keep their order after the copies
        (
            ["$s3", "$s1"],
            ["$c1", "$own2", "$c3", "$own1"],
            {"$c1", "$c3"},
            ["$c3", "$c1", "$own2", "$own1"],
        ),
        # nothing anywhere
        ([], [], set(), []),
        # a post pinned twice at school is pinned once
        (["$s1", "$s1"], [], set(), ["$c1"]),
    ],
)
def test_class_pins(
    school: list[str], current: list[str], mirrored: set[str], expected: list[str]
) -> None:
    assert class_pins(school, COPIES, current, mirrored) == expected
