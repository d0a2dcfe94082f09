"""An admin's article for the school news: the HTML a message may hold, who may be its author,
and its message (`sferum_shared/html.py`, `synapse_sferum/policy/articles.py`)."""

from __future__ import annotations

import pytest

from sferum_shared.html import message_html
from sferum_shared.ids import PersonId
from sferum_shared.model import Member, Role
from synapse_sferum.policy.articles import (
    MAX_ARTICLE_BYTES,
    ArticleError,
    article_content,
    author_refusal,
    check_key,
    content_hash,
    edit_content,
)

SCHOOL = "school-1"


@pytest.mark.parametrize(
    ("html", "expected", "dropped"),
    [
        ("<h1>Концерт</h1><ul><li>5А</li></ul>", "<h1>Концерт</h1><ul><li>5А</li></ul>", ()),
        ("<p>a<script>alert(1)</script>b</p>", "<p>ab</p>", ("script",)),
        (
            '<img src="mxc://s/a" alt="фото" width="320" height="x" onerror="alert(1)">',
            '<img src="mxc://s/a" alt="фото" width="320">',
            (),
        ),
        (
            '<p><img src="https://evil/x.png" alt="схема"></p>',
            "<p>[схема]</p>",
            ("img without an mxc:// src",),
        ),
        ('<a href="https://school.example/">x</a>', '<a href="https://school.example/">x</a>', ()),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>", ()),
        (
            "<html><body><font color=red>x</font><iframe>y</iframe></body></html>",
            "x",
            ("font", "iframe"),
        ),
        ("<mx-reply>цитата</mx-reply>ответ", "ответ", ("mx-reply",)),
    ],
)
def test_a_message_keeps_only_what_matrix_allows(
    html: str, expected: str, dropped: tuple[str, ...]
) -> None:
    sanitized = message_html(html)
    assert (sanitized.html, sanitized.dropped) == (expected, dropped)


def member(*roles: Role, orgs: tuple[str, ...] = (SCHOOL,)) -> Member:
    return Member(PersonId("x"), frozenset(roles), frozenset(orgs))


@pytest.mark.parametrize(
    ("who", "pin", "refused"),
    [
        (member(Role.STAFF), True, None),
        (member(Role.STAFF), False, None),
        (member(Role.TEACHER), False, None),
        (member(Role.TEACHER), True, "may not pin"),
        (member(Role.STUDENT), False, "may not post"),
        (member(Role.GUARDIAN), False, "may not post"),
        (member(Role.STAFF, orgs=("school-2",)), False, "may not post"),
        (None, False, "not a person of the directory"),
    ],
    ids=[
        "staff pin",
        "staff post",
        "teacher post",
        "teacher pin",
        "pupil",
        "guardian",
        "staff of another school",
        "unknown",
    ],
)
def test_who_may_post_and_pin(who: Member | None, pin: bool, refused: str | None) -> None:
    refusal = author_refusal(who, "x", SCHOOL, pin=pin)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal and "'x'" in refusal


def test_an_article_is_an_html_message_with_its_text() -> None:
    content, dropped = article_content("<h1>Концерт</h1><ul><li>5А</li><li>6Б</li></ul>", None)
    assert content == {
        "msgtype": "m.text",
        "body": "Концерт\n5А\n6Б",
        "format": "org.matrix.custom.html",
        "formatted_body": "<h1>Концерт</h1><ul><li>5А</li><li>6Б</li></ul>",
    }
    assert dropped == []


@pytest.mark.parametrize(
    ("html", "title", "formatted"),
    [
        ("<p>В пятницу</p>", "Концерт & бал", "<h1>Концерт &amp; бал</h1><p>В пятницу</p>"),
        ("<h2>Концерт</h2><p>x</p>", " Концерт ", "<h2>Концерт</h2><p>x</p>"),
    ],
)
def test_a_title_heads_the_article_once(html: str, title: str, formatted: str) -> None:
    content, _ = article_content(html, title)
    assert content["formatted_body"] == formatted
    assert content["body"].splitlines()[0] == " ".join(title.split())


@pytest.mark.parametrize(
    ("html", "title", "message"),
    [
        ("<script>alert(1)</script>", None, "no text"),
        ("<p> </p>", None, "no text"),
        ("<p>x</p>", "  ", "title is empty"),
        ("<p>" + "я" * MAX_ARTICLE_BYTES + "</p>", None, "a Matrix message holds at most"),
    ],
)
def test_an_article_that_cannot_be_posted_says_why(
    html: str, title: str | None, message: str
) -> None:
    with pytest.raises(ArticleError, match=message):
        article_content(html, title)


@pytest.mark.parametrize("key", ["open-lessons", "2027_концерт", "", "a b", "x" * 101])
def test_article_keys(key: str) -> None:
    if key == "open-lessons":
        assert check_key(key) == key
    else:
        with pytest.raises(ArticleError, match="article key"):
            check_key(key)


def test_a_changed_article_is_an_edit_of_its_post() -> None:
    content, _ = article_content("<h1>Концерт</h1><p>В пятницу</p>", None)
    changed, _ = article_content("<h1>Концерт</h1><p>В субботу</p>", None)
    assert content_hash(content) == content_hash(dict(reversed(list(content.items()))))
    assert content_hash(content) != content_hash(changed)
    edit = edit_content(changed, "$post")
    assert edit["m.new_content"] == changed
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$post"}
    assert edit["body"] == "* Концерт\nВ субботу"
    assert edit["formatted_body"] == "* <h1>Концерт</h1><p>В субботу</p>"
