"""An article's HTML made safe for the mini-app's page, and its plain text (pure).

A news article's `formatted_body` is whatever a staff member's client sent: the page shows it
in the bridge's own origin, next to a pupil's data, so nothing but a small allow-list gets
through: the tags the Matrix spec allows in messages (minus `font`, colours and `mx-reply`),
no attribute but a link's `http(s)`/`mailto` `href`, a list's `start` and a code block's
language. An `<img>` points at `mxc://` media the page cannot fetch without the viewer's
access token, so it becomes its alt text in a placeholder. What script or style holds is
dropped with its tag; any other unknown tag is dropped and its text kept, escaped.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ALLOWED = frozenset(
    {
        "h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "span", "blockquote", "pre", "code",
        "ul", "ol", "li", "b", "i", "u", "strong", "em", "del", "strike", "s", "sup", "sub",
        "a", "br", "hr", "table", "thead", "tbody", "tr", "th", "td", "caption",
        "details", "summary",
    }
)  # fmt: skip
# Dropped with everything inside: code, styles, embedded documents, the reply fallback.
_DROPPED = frozenset(
    {"script", "style", "template", "iframe", "object", "embed", "svg", "math", "noscript",
     "title", "head", "textarea", "select", "mx-reply"}
)  # fmt: skip
_VOID = frozenset({"br", "hr", "img", "wbr", "input", "meta", "link", "area", "source"})
_BLOCKS = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "blockquote", "pre", "li", "tr",
     "table", "ul", "ol", "details", "summary", "caption", "br", "hr"}
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+-]{1,30}")
_MAX_DEPTH = 100  # the spec's advice on nesting


class _Walker(HTMLParser):
    """Calls `tag`/`text` for what lies outside dropped elements; subclasses write output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._dropping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropping:
            if tag == self._dropping[-1] and tag not in _VOID:
                self._dropping.append(tag)
        elif tag in _DROPPED:
            self._dropping.append(tag)
        else:
            self.on_open(tag, {k: v for k, v in attrs if v is not None})
            if tag in _VOID:
                self.on_close(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._dropping and tag not in _DROPPED:
            self.on_open(tag, {k: v for k, v in attrs if v is not None})
            self.on_close(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._dropping:
            if tag == self._dropping[-1]:
                self._dropping.pop()
        elif tag not in _VOID:
            self.on_close(tag)

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.on_text(data)

    def on_open(self, tag: str, attrs: dict[str, str]) -> None: ...

    def on_close(self, tag: str) -> None: ...

    def on_text(self, data: str) -> None: ...


class _Sanitizer(_Walker):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self._open: list[str] = []

    def on_open(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "img":
            alt = attrs.get("alt") or attrs.get("title") or "изображение"
            self.out.append(f'<span class="img">[{html.escape(alt)}]</span>')
            return
        if tag not in ALLOWED or len(self._open) >= _MAX_DEPTH:
            return
        kept = "".join(f' {k}="{html.escape(v)}"' for k, v in _attributes(tag, attrs))
        self.out.append(f"<{tag}{kept}>")
        if tag not in _VOID:
            self._open.append(tag)

    def on_close(self, tag: str) -> None:
        if tag not in self._open:
            return
        while self._open:
            top = self._open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                return

    def on_text(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self._open))


def _attributes(tag: str, attrs: dict[str, str]) -> list[tuple[str, str]]:
    if tag == "a":
        href = attrs.get("href", "").strip()
        if not href.lower().startswith(_LINK_SCHEMES):
            return []
        return [("href", href), ("rel", "noopener noreferrer nofollow"), ("target", "_blank")]
    if tag == "ol" and attrs.get("start", "").isdigit():
        return [("start", attrs["start"])]
    if tag == "code" and _LANGUAGE.fullmatch(attrs.get("class", "")):
        return [("class", attrs["class"])]
    return []


class _Text(_Walker):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.heading: str | None = None
        self._in_heading: list[str] | None = None

    def on_open(self, tag: str, attrs: dict[str, str]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")
        if tag == "img":
            self.parts.append(f"[{attrs.get('alt') or 'изображение'}]")
        if tag in _HEADINGS and self.heading is None and self._in_heading is None:
            self._in_heading = []

    def on_close(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")
        if tag in _HEADINGS and self._in_heading is not None:
            self.heading = " ".join("".join(self._in_heading).split()) or None
            self._in_heading = None

    def on_text(self, data: str) -> None:
        self.parts.append(data)
        if self._in_heading is not None:
            self._in_heading.append(data)


def sanitize(formatted_body: str) -> str:
    """The allow-listed HTML of `formatted_body`, well formed (every tag it opens is closed)."""
    parser = _Sanitizer()
    parser.feed(formatted_body)
    parser.close()
    return parser.result()


def plain_text(formatted_body: str) -> tuple[str | None, str]:
    """(the first heading's text or None, the whole text in lines), as the page's summary."""
    parser = _Text()
    parser.feed(formatted_body)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return parser.heading, "\n".join(line for line in lines if line)
