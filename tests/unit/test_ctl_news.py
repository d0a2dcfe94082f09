"""`sferumctl news post`: reading the article file, its key, and what the admin is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from sferum_shared.adminapi import PostedArticle
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.news import MAX_FILE_BYTES, default_key, read_article, report


def test_an_article_file_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.html"
    path.write_bytes("\ufeff<h1>Концерт</h1>".encode())
    assert read_article(path) == "<h1>Концерт</h1>"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "cannot read the article: No such file or directory"),
        (b"", "the file is empty"),
        (b" \n\t", "the file is empty"),
        ("<p>Концерт</p>".encode("cp1251"), "not UTF-8 text (byte 3)"),
        (b"x" * (MAX_FILE_BYTES + 1), "larger than 1024 KiB"),
    ],
)
def test_a_bad_article_file_is_named_with_what_is_wrong(
    tmp_path: Path, data: bytes | None, message: str
) -> None:
    path = tmp_path / "a.html"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(CtlError) as raised:
        read_article(path)
    assert raised.value.message.startswith(f"{path}: ") and message in raised.value.message


def test_a_folder_is_not_an_article(tmp_path: Path) -> None:
    with pytest.raises(CtlError, match="cannot read the article"):
        read_article(tmp_path)


@pytest.mark.parametrize(
    ("name", "key"),
    [("open-lessons.html", "open-lessons"), ("Концерт.HTM", "Концерт"), ("note.txt", "note.txt")],
)
def test_the_default_key_is_the_file_name(name: str, key: str) -> None:
    assert default_key(Path("/x") / name) == key


def answer(
    action: str, *, pinned: bool, sent: str | None = None, dropped: tuple[str, ...] = ()
) -> PostedArticle:
    return PostedArticle("school-1", "!news:s", "$a", "@staff:s", action, sent, pinned, dropped)


def test_what_the_admin_is_told() -> None:
    path = Path("open-lessons.html")
    first = report(answer("posted", sent="$a", pinned=True, dropped=("script",)), path, pin=True)
    assert first == [
        "left out of open-lessons.html (not allowed in a message): script",
        "posted open-lessons.html into the school news of school-1 as @staff:s: $a "
        "(copied into every class's news within seconds)",
        "pinned in the school news; the copies in the class news follow",
    ]
    again = report(answer("unchanged", pinned=False), path, pin=True)
    assert again == [
        "open-lessons.html is in the school news of school-1 already: $a; nothing sent",
        "pinned already",
    ]
    assert report(answer("unchanged", pinned=False), path, pin=False)[1:] == []
    edited = report(answer("edited", sent="$e", pinned=False), path, pin=False)
    assert edited == [
        "open-lessons.html changed: edited its post $a in the school news of school-1 "
        "($e; the copies follow)"
    ]


def test_the_author_is_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["news", "post", str(tmp_path), str(tmp_path / "a.html")])
    assert "--author" in capsys.readouterr().err
