"""The author's line on a copy of school news, written by the module and read by the bridge.

The module puts the author's real name in front of each copy it makes in a class news room
(`synapse_sferum/mirror.py`); the diary mini-app's «Новости» takes it off again to show the name
apart from the article. Both directions live here so the format is spelled once.
"""

from __future__ import annotations

import html
import re

# Block elements of the HTML the Matrix spec allows in `formatted_body`: an inline `<b>` in front
# of one would sit outside it (and before an `<h1>`, read as part of no paragraph at all).
_BLOCK = re.compile(r"<\s*(h[1-6]|p|ul|ol|blockquote|pre|table|div|hr|details)\b", re.IGNORECASE)
_SEPARATOR = ": "


def byline_body(author: str, body: str) -> str:
    return f"{author}{_SEPARATOR}{body}"


def byline_html(author: str, formatted_body: str) -> str:
    """The copy's HTML: a short post reads «<b>Author</b>: text»; an article (any block
    element) gets the author as a paragraph of its own above it, so headings stay headings."""
    name = f"<b>{html.escape(author)}</b>"
    if _BLOCK.search(formatted_body):
        return f"<p>{name}</p>{formatted_body}"
    return f"{name}{_SEPARATOR}{formatted_body}"


def split_byline(body: str, formatted_body: str | None) -> tuple[str, str, str | None]:
    """(author, body, formatted_body) of a copy; the author is "" when the copy has no byline.

    A real name holds no ": ", so the body's first one ends the name; the HTML loses its byline
    only when it is exactly the one `byline_html` wrote for that name.
    """
    author, sep, rest = body.partition(_SEPARATOR)
    if not sep or not author:
        return "", body, formatted_body
    if formatted_body is not None:
        name = f"<b>{html.escape(author)}</b>"
        for prefix in (f"<p>{name}</p>", f"{name}{_SEPARATOR}"):
            if formatted_body.startswith(prefix):
                formatted_body = formatted_body[len(prefix) :]
                break
    return author, rest, formatted_body
