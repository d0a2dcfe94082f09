"""School stickers: the pack's content, the account data merged with the user's own, and the
checks `sferumctl stickers import` makes of every file before anything is sent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from synapse_sferum.ctl.demo_stickers import demo_stickers
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.stickers import Picture, check_picture, read_folder, shortcode_of
from synapse_sferum.policy.stickers import (
    CLASS_PACK,
    SCHOOL_PACK,
    PackImage,
    merged_pack_rooms,
    pack_content,
)


def test_the_pack_is_what_clients_read() -> None:
    image = PackImage("улыбка", "mxc://s/a", "image/png", 2058, 256, 256)
    assert pack_content("Стикеры школы", [image]) == {
        "pack": {"display_name": "Стикеры школы", "usage": ["sticker", "emoticon"]},
        "images": {
            "улыбка": {
                "url": "mxc://s/a",
                "body": "улыбка",
                "info": {"mimetype": "image/png", "size": 2058, "w": 256, "h": 256},
            }
        },
    }


SPACE_5A, SPACE_6B, SCHOOL, OWN = "!5a:s", "!6b:s", "!school:s", "!mine:s"


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        (None, {SPACE_5A: {SCHOOL_PACK}}, {"rooms": {SPACE_5A: {SCHOOL_PACK: {}}}}),
        # The user's own packs (another room, another pack of the same room) stay.
        (
            {"rooms": {OWN: {"": {}}, SPACE_5A: {"mine": {}}}, "other": 1},
            {SPACE_5A: {SCHOOL_PACK, CLASS_PACK}},
            {
                "rooms": {OWN: {"": {}}, SPACE_5A: {"mine": {}, SCHOOL_PACK: {}, CLASS_PACK: {}}},
                "other": 1,
            },
        ),
        # A pupil who moved from 6Б to 5А: 6Б's platform packs go, 5А's come.
        (
            {"rooms": {SPACE_6B: {SCHOOL_PACK: {}, CLASS_PACK: {}}}},
            {SPACE_5A: {SCHOOL_PACK}},
            {"rooms": {SPACE_5A: {SCHOOL_PACK: {}}}},
        ),
        # Nothing wanted: only the platform's entries leave; malformed parts are kept as they are.
        (
            {"rooms": {SCHOOL: {SCHOOL_PACK: {}, "x": {}}, OWN: "?"}},
            {},
            {"rooms": {SCHOOL: {"x": {}}, OWN: "?"}},
        ),
        ({"rooms": "?"}, {SPACE_5A: {SCHOOL_PACK}}, {"rooms": {SPACE_5A: {SCHOOL_PACK: {}}}}),
    ],
)
def test_account_data_keeps_the_users_own_packs(
    current: dict[str, Any] | None, wanted: dict[str, set[str]], expected: dict[str, Any]
) -> None:
    frozen = {room: frozenset(keys) for room, keys in wanted.items()}
    assert merged_pack_rooms(current, frozen) == expected


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("улыбка.png", "улыбка"),
        ("Star_2.webp", "star_2"),
        ("thumbs-up.gif", "thumbs-up"),
        ("two words.png", None),
        ("smile:).png", None),
        (f"{'a' * 65}.png", None),
    ],
)
def test_shortcodes_come_from_file_names(name: str, code: str | None) -> None:
    assert shortcode_of(Path(name)) == code


def picture(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA" if fmt != "JPEG" else "RGB", size, "red").save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("a.png", picture("PNG"), None),
        ("a.webp", picture("WEBP"), None),
        ("a.gif", picture("GIF"), None),
        ("a.jpg", picture("JPEG"), "a JPEG picture"),
        ("a.png", picture("PNG", (8, 8)), "8×8 pixels"),
        ("a.png", picture("PNG", (2000, 64)), "2000×64 pixels"),
        ("a.png", b"MZ\x90\x00" + bytes(100), "not a picture"),
        ("a.png", bytes(600 * 1024), "600 KiB"),
        ("a b.png", picture("PNG"), "its name"),
    ],
)
def test_every_file_is_checked(name: str, data: bytes, problem: str | None) -> None:
    checked = check_picture(Path(name), data)
    if problem is None:
        assert isinstance(checked, Picture)
    else:
        assert isinstance(checked, str) and problem in checked


def test_one_bad_file_stops_the_whole_folder_and_names_each(tmp_path: Path) -> None:
    (tmp_path / "good.png").write_bytes(picture("PNG"))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "GOOD.webp").write_bytes(picture("WEBP"))  # the same :good: shortcode
    (tmp_path / ".hidden").write_text("ignored")
    with pytest.raises(CtlError) as e:
        read_folder(tmp_path)
    assert "nothing was imported" in e.value.message
    assert e.value.details == (
        "good.png: another file already gives :good:",
        "notes.txt: not a picture (PNG, WebP or GIF) that can be read",
    )
    with pytest.raises(CtlError, match="no such folder"):
        read_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CtlError, match="no pictures"):
        read_folder(empty)


def test_the_demo_pack_is_drawn_and_passes_the_checks() -> None:
    files = demo_stickers()
    assert len(files) >= 6
    for name, data in files.items():
        assert isinstance(check_picture(Path(name), data), Picture), name
