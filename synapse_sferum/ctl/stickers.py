"""`sferumctl stickers import`: a folder of pictures becomes the school's (or a class's) sticker
pack. Every file is checked before anything is sent, so a bad file stops the import with its
reason and nothing is half-imported; the pictures are uploaded as the platform's bot (the
appservice's token) and the module puts the pack into the spaces (docs/rooms-and-rules.md)."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import attrs
from PIL import Image, UnidentifiedImageError

from sferum_shared.adminapi import parse_object
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment, local_base_url
from synapse_sferum.ctl.errors import EXIT_UNREACHABLE, CtlError
from synapse_sferum.ctl.http import open_local
from synapse_sferum.ctl.tables import format_table
from synapse_sferum.policy.stickers import PackImage, pack_content

MAX_BYTES = 512 * 1024  # a sticker travels to every phone of the school
MIN_SIDE, MAX_SIDE = 16, 1024
MIMETYPES = {"PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# A shortcode is what people type between colons: letters (Cyrillic too), digits, _ and -.
_SHORTCODE = re.compile(r"[\w-]{1,64}")
UPLOAD_TIMEOUT_SECONDS = 60.0


@attrs.frozen
class Picture:
    shortcode: str
    filename: str
    mimetype: str
    data: bytes
    width: int
    height: int


def shortcode_of(path: Path) -> str | None:
    """The file's name without its extension, lower-cased; None if it has other characters."""
    code = path.stem.lower()
    return code if _SHORTCODE.fullmatch(code) else None


def check_picture(path: Path, data: bytes) -> Picture | str:
    """The picture, or what is wrong with it (in words for the person who chose the file)."""
    shortcode = shortcode_of(path)
    if shortcode is None:
        return "its name must be letters, digits, _ or - (the name becomes the :shortcode:)"
    if len(data) > MAX_BYTES:
        return f"{len(data) // 1024} KiB; a sticker may be at most {MAX_BYTES // 1024} KiB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "not a picture (PNG, WebP or GIF) that can be read"
    if image_format not in MIMETYPES:
        return f"a {image_format} picture; stickers are PNG, WebP or GIF"
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        return f"{width}×{height} pixels; each side must be {MIN_SIDE} to {MAX_SIDE}"
    return Picture(shortcode, path.name, MIMETYPES[image_format], data, width, height)


def read_folder(folder: Path) -> list[Picture]:
    """Every picture of the folder, checked; a CtlError listing each bad file otherwise."""
    if not folder.is_dir():
        raise CtlError(f"{folder}: no such folder")
    pictures: list[Picture] = []
    problems: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        checked = check_picture(path, path.read_bytes())
        if isinstance(checked, str):
            problems.append(f"{path.name}: {checked}")
        elif any(p.shortcode == checked.shortcode for p in pictures):
            problems.append(f"{path.name}: another file already gives :{checked.shortcode}:")
        else:
            pictures.append(checked)
    if problems:
        raise CtlError(
            f"{folder}: {len(problems)} file(s) cannot be stickers; nothing was imported",
            details=problems,
        )
    if not pictures:
        raise CtlError(f"{folder}: no pictures in this folder (PNG, WebP or GIF files)")
    return pictures


def upload(deployment: Deployment, picture: Picture) -> str:
    """Uploads a picture as the platform's bot; returns its mxc:// URI."""
    base_url = local_base_url(deployment, deployment.load_config())
    token = deployment.load_secrets().get("as_token")
    if not token:
        raise CtlError(f"{deployment.secrets_file} has no as_token; run: sferumctl init")
    query = urllib.parse.urlencode({"filename": picture.filename})
    request = urllib.request.Request(
        f"{base_url}/_matrix/media/v3/upload?{query}",
        data=picture.data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": picture.mimetype},
        method="POST",
    )
    try:
        with open_local(request, timeout=UPLOAD_TIMEOUT_SECONDS) as answer:
            uri = json.loads(answer.read()).get("content_uri")
    except urllib.error.HTTPError as e:
        with e:
            raise CtlError(
                f"the server refused {picture.filename}: HTTP {e.code} {e.read()[:300]!r}; "
                "no pack was changed"
            ) from None
    except OSError as e:
        raise CtlError(
            f"cannot reach the server at {base_url}: {getattr(e, 'reason', e)}",
            exit_code=EXIT_UNREACHABLE,
        ) from None
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        raise CtlError(f"the server gave no mxc:// URI for {picture.filename}")
    return uri


def import_stickers(
    deployment: Deployment, folder: Path, *, class_id: str | None, name: str | None
) -> list[str]:
    """Checks, uploads and publishes the pack; returns what the admin is told."""
    pictures = read_folder(folder)
    images = [
        PackImage(
            shortcode=p.shortcode,
            url=upload(deployment, p),
            mimetype=p.mimetype,
            size=len(p.data),
            width=p.width,
            height=p.height,
        )
        for p in pictures
    ]
    display_name = name or ("Стикеры класса" if class_id else "Стикеры школы")
    content = pack_content(display_name, images)
    answer = parsed(parse_object, call(deployment, lambda api: api.stickers(content, class_id)))
    rows: list[list[str | int]] = [[f":{p.shortcode}:", p.filename] for p in pictures]
    return [
        *format_table(["sticker", "file"], rows),
        f"pack «{display_name}» is in {len(answer.get('rooms', []))} space(s); "
        f"{answer.get('accounts_updated', 0)} account(s) now offer it",
    ]
