"""`sferumctl news post`: an HTML file into the school news as a staff member's article, pinned
if asked (docs/rooms-and-rules.md «Articles and pins»).

The file is read here; the module holds the HTML to what a Matrix message may carry, checks
that the author may post (and pin) in the school news, and posts it once per key: the key is the
file's name without `.html` unless `--key` gives one. Running the command again sends nothing,
or an edit of the post when the file changed.
"""

from __future__ import annotations

from pathlib import Path

from sferum_shared.adminapi import PostedArticle, parse_news_post
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError

#: Larger than any article a Matrix event can hold: the module says how much is too much.
MAX_FILE_BYTES = 1024 * 1024


def read_article(path: Path) -> str:
    """The file's HTML as text; a CtlError naming the file and what is wrong with it."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise CtlError(f"{path}: cannot read the article: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CtlError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not an article")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CtlError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if not text.strip():
        raise CtlError(f"{path}: the file is empty")
    return text


def default_key(path: Path) -> str:
    """The article's key when none is given: the file's name without its `.html`/`.htm`."""
    name = path.name
    for suffix in (".html", ".htm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def report(article: PostedArticle, path: Path, *, pin: bool) -> list[str]:
    """What the admin is told of the answer."""
    lines = []
    if article.dropped:
        lines.append(
            f"left out of {path.name} (not allowed in a message): " + ", ".join(article.dropped)
        )
    where = f"the school news of {article.org_id}"
    if article.action == "posted":
        lines.append(
            f"posted {path.name} into {where} as {article.author}: {article.event_id} "
            "(copied into every class's news within seconds)"
        )
    elif article.action == "edited":
        lines.append(
            f"{path.name} changed: edited its post {article.event_id} in {where} "
            f"({article.sent}; the copies follow)"
        )
    else:
        lines.append(f"{path.name} is in {where} already: {article.event_id}; nothing sent")
    if article.pinned:
        lines.append("pinned in the school news; the copies in the class news follow")
    elif pin:
        lines.append("pinned already")
    return lines


def post_article(
    deployment: Deployment,
    path: Path,
    *,
    author: str,
    title: str | None,
    pin: bool,
    key: str | None,
    school: str | None,
) -> list[str]:
    html = read_article(path)
    response = call(
        deployment,
        lambda api: api.news_post(
            author=author,
            key=key or default_key(path),
            html=html,
            title=title,
            pin=pin,
            school=school,
        ),
    )
    return report(parsed(parse_news_post, response), path, pin=pin)
