"""The mini-app's «Новости»: sanitising an article's HTML, its summary, and which events count."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridges.diary.news import (
    ARTICLES,
    NewsUnavailable,
    articles,
    events_of,
    messages_request,
    summary,
)
from bridges.diary.sanitize import plain_text, sanitize
from sferum_shared.byline import byline_body, byline_html, split_byline
from sferum_shared.http import Response
from sferum_shared.vocabulary import Key

BOT = "@sferum:school.test"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<h1>Концерт</h1><p>В <b>пятницу</b></p>", "<h1>Концерт</h1><p>В <b>пятницу</b></p>"),
        ("<p>a<script>alert(1)</script>b</p>", "<p>ab</p>"),
        ("<SCRIPT src=//evil></SCRIPT>x", "x"),
        ("<style>p{color:red}</style>x", "x"),
        ('<img src="mxc://s/a" onerror="alert(1)" alt="фото">', '<span class="img">[фото]</span>'),
        ('<img src="https://evil/x.png">', '<span class="img">[изображение]</span>'),
        ('<img alt="&quot;><script>">', '<span class="img">[&quot;&gt;&lt;script&gt;]</span>'),
        ('<p onclick="alert(1)" style="x">t</p>', "<p>t</p>"),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
        ('<a href=" JaVaScRiPt:alert(1)">x</a>', "<a>x</a>"),
        ('<a href="data:text/html,<script>">x</a>', "<a>x</a>"),
        (
            '<a href="https://school.example/?a=1&b=&quot;">x</a>',
            '<a href="https://school.example/?a=1&amp;b=&quot;" rel="noopener noreferrer nofollow"'
            ' target="_blank">x</a>',
        ),
        ('<iframe src="https://evil"><p>in</p></iframe>out', "out"),
        ("<mx-reply><blockquote>цитата</blockquote></mx-reply>ответ", "ответ"),
        ('<font color="red">текст</font>', "текст"),
        ("<b><i>x</b>y", "<b><i>x</i></b>y"),
        ("<ul><li>1<li>2", "<ul><li>1<li>2</li></li></ul>"),
        ('<ol start="3" type="a"><li>x</li></ol>', '<ol start="3"><li>x</li></ol>'),
        ('<code class="language-python">x</code>', '<code class="language-python">x</code>'),
        ('<code class="x onmouseover">x</code>', "<code>x</code>"),
        ("1 < 2 & 3", "1 &lt; 2 &amp; 3"),
        ("<svg><script>alert(1)</script></svg>ok", "ok"),
        ("</p>stray<br/>", "stray<br>"),
    ],
)
def test_sanitize_keeps_only_the_allow_list(html: str, expected: str) -> None:
    assert sanitize(html) == expected


@pytest.mark.parametrize(
    ("html", "heading", "text"),
    [
        ("<h2>Концерт</h2><p>В пятницу</p>", "Концерт", "Концерт\nВ пятницу"),
        ("<p>Раз</p><h1>Два</h1><h1>Три</h1>", "Два", "Раз\nДва\nТри"),
        ("строка<br>строка", None, "строка\nстрока"),
        ("<p>a<script>b</script></p>", None, "a"),
        ('<p><img alt="схема"> к уроку</p>', None, "[схема] к уроку"),
    ],
)
def test_plain_text(html: str, heading: str | None, text: str) -> None:
    assert plain_text(html) == (heading, text)


@pytest.mark.parametrize(
    ("body", "html", "title", "rest"),
    [
        ("x", "<h1>Концерт</h1><p>В пятницу в 18:00</p>", "Концерт", "В пятницу в 18:00"),
        ("x", "<p>Субботник</p><p>Приходите</p>", "Субботник", "Приходите"),
        ("Линейка в 8:30\nбез опозданий", None, "Линейка в 8:30", "без опозданий"),
        ("", None, "", ""),
        ("x", "<h1>T</h1><p>" + "я" * 400 + "</p>", "T", "я" * 299 + "…"),
    ],
)
def test_summary(body: str, html: str | None, title: str, rest: str) -> None:
    assert summary(body, html) == (title, rest)


@pytest.mark.parametrize("formatted", ["<h1>Концерт</h1><p>x</p>", "Линейка в <b>8:30</b>"])
def test_the_byline_comes_off_as_it_went_on(formatted: str) -> None:
    body = byline_body("Ирина Петрова", "Концерт: x")
    assert split_byline(body, byline_html("Ирина Петрова", formatted)) == (
        "Ирина Петрова",
        "Концерт: x",
        formatted,
    )
    plain = ("", "без автора", "<p>без автора</p>")
    assert split_byline(*plain[1:]) == plain


def copy(event_id: str, ts: int, html: str | None, **extra: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": byline_body("Ирина Петрова", "Концерт"),
        Key.MIRROR_OF: {"room_id": "!school", "event_id": "$o", "sender": "@irina:school.test"},
    }
    if html is not None:
        content |= {"format": "org.matrix.custom.html",
                    "formatted_body": byline_html("Ирина Петрова", html)}  # fmt: skip
    content |= extra
    return {"event_id": event_id, "sender": BOT, "origin_server_ts": ts, "content": content}


def test_articles_are_the_bots_copies_with_their_newest_edit() -> None:
    noon = 1_780_000_000_000  # 2026-05-28 23:26:40 in Moscow
    edited = copy("$edit", noon + 2, None, body="* Ирина Петрова: Концерт перенесён")
    edited["content"] |= {
        "m.new_content": copy("-", 0, "<h1>Концерт перенесён</h1><p>На субботу</p>")["content"],
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$a1"},
    }
    events = [
        edited,
        {**copy("$own", noon + 1, None), "sender": "@teacher:school.test"},  # not a copy
        copy("$nomirror", noon, None) | {"content": {"msgtype": "m.text", "body": "x"}},
        {"event_id": "$redacted", "sender": BOT, "origin_server_ts": noon, "content": {}},
        copy("$a2", noon, None),
        copy("$a1", noon - 1, "<h1>Концерт</h1><script>alert(1)</script>"),
    ]
    shown = articles(events, BOT, "Europe/Moscow")
    assert [a["event_id"] for a in shown] == ["$a2", "$a1"]
    assert shown[0] | {"sent": ""} == {
        "event_id": "$a2",
        "author": "Ирина Петрова",
        "author_id": "@irina:school.test",
        "sent": "",
        "day": "чт, 28 мая",
        "time": "23:26",
        "title": "Концерт",
        "summary": "",
        "html": None,
        "text": "Концерт",
    }
    assert shown[1]["title"] == "Концерт перенесён" and shown[1]["summary"] == "На субботу"
    assert shown[1]["html"] == "<h1>Концерт перенесён</h1><p>На субботу</p>"
    many = [copy(f"${i}", i, None) for i in range(ARTICLES + 5)]
    assert len(articles(many, BOT, "Europe/Moscow")) == ARTICLES


def test_the_messages_request_and_answer() -> None:
    request = messages_request("https://hs/", "as-token", "!room:s")
    assert request.url.startswith("https://hs/_matrix/client/v3/rooms/%21room%3As/messages?dir=b")
    assert request.headers == {"Authorization": "Bearer as-token"}
    chunk = [{"event_id": "$1"}, "junk"]
    assert events_of(Response(200, json.dumps({"chunk": chunk}).encode())) == [{"event_id": "$1"}]

    for bad in (Response(403, b'{"errcode": "M_FORBIDDEN"}'), Response(200, b"<html>")):
        with pytest.raises(NewsUnavailable):
            events_of(bad)
