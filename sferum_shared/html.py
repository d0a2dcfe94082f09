"""An article's HTML held to an allow-list, and its plain text (pure).

Two readers share it. The module posts an admin's article file into the school news
(`synapse_sferum/articles.py`): there the allow-list is what the Matrix spec lets a message's
`formatted_body` hold (`org.matrix.custom.html`), an `<img>` of this platform's `mxc://` media
included. The diary mini-app shows a posted article in its own web page (`bridges/diary/news.py`):
there an `<img>` becomes its alt text (the page cannot fetch `mxc://` media without the viewer's
token) and a link opens in a new tab.

Either way: the tags of the spec (minus `font`, colours and `mx-reply`), no attribute but a
link's `http(s)`/`mailto` `href`, a list's `start`, a code block's language and, in a message,
an image's `src` (`mxc://` only), `alt`, `title`, `width` and `height`. What script or style holds
is dropped with its tag; any other unknown tag is dropped and its text kept, escaped.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import attrs

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
# Tags that carry no meaning of their own in a document: dropped without being reported.
_QUIET = frozenset({"html", "body"})
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+-]{1,30}")
_SIZE = re.compile(r"[0-9]{1,4}")
MXC = "mxc://"
_MAX_DEPTH = 100  # the spec's advice on nesting


class _Walker(HTMLParser):
    """Calls `on_open`/`on_close`/`on_text` for what lies outside dropped elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._dropping: list[str] = []
        self.dropped: list[str] = []  # what was left out, in order, once each

    def _drop(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropping:
            if tag == self._dropping[-1] and tag not in _VOID:
                self._dropping.append(tag)
        elif tag in _DROPPED:
            self._drop(tag)
            self._dropping.append(tag)
        else:
            self.on_open(tag, {k: v for k, v in attrs if v is not None})
            if tag in _VOID:
                self.on_close(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._dropping:
            return
        if tag in _DROPPED:
            self._drop(tag)
            return
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
    def __init__(self, *, for_page: bool) -> None:
        super().__init__()
        self._for_page = for_page
        self.out: list[str] = []
        self._open: list[str] = []

    def on_open(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "img":
            self._image(attrs)
            return
        if tag not in ALLOWED or len(self._open) >= _MAX_DEPTH:
            if tag not in _QUIET:
                self._drop(tag)
            return
        self._write(tag, self._attributes(tag, attrs))

    def _write(self, tag: str, attributes: list[tuple[str, str]]) -> None:
        kept = "".join(f' {k}="{html.escape(v)}"' for k, v in attributes)
        self.out.append(f"<{tag}{kept}>")
        if tag not in _VOID:
            self._open.append(tag)

    def _image(self, attrs: dict[str, str]) -> None:
        alt = attrs.get("alt") or attrs.get("title") or "изображение"
        if self._for_page:
            self.out.append(f'<span class="img">[{html.escape(alt)}]</span>')
            return
        src = attrs.get("src", "").strip()
        if not src.startswith(MXC):
            self._drop("img without an mxc:// src")
            self.out.append(html.escape(f"[{alt}]", quote=False))
            return
        kept = [("src", src)]
        kept += [(k, attrs[k]) for k in ("alt", "title") if attrs.get(k)]
        kept += [(k, attrs[k]) for k in ("width", "height") if _SIZE.fullmatch(attrs.get(k, ""))]
        self._write("img", kept)

    def _attributes(self, tag: str, attrs: dict[str, str]) -> list[tuple[str, str]]:
        if tag == "a":
            href = attrs.get("href", "").strip()
            if not href.lower().startswith(_LINK_SCHEMES):
                return []
            if not self._for_page:
                return [("href", href)]
            return [("href", href), ("rel", "noopener noreferrer nofollow"), ("target", "_blank")]
        if tag == "ol" and attrs.get("start", "").isdigit():
            return [("start", attrs["start"])]
        if tag == "code" and _LANGUAGE.fullmatch(attrs.get("class", "")):
            return [("class", attrs["class"])]
        return []

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


@attrs.frozen
class Sanitized:
    html: str  # well formed: every tag it opens is closed
    dropped: tuple[str, ...]  # the tags (and bad images) left out, once each, in order


def _sanitized(formatted_body: str, *, for_page: bool) -> Sanitized:
    parser = _Sanitizer(for_page=for_page)
    parser.feed(formatted_body)
    parser.close()
    return Sanitized(parser.result(), tuple(parser.dropped))


def message_html(formatted_body: str) -> Sanitized:
    """HTML a Matrix message may carry (`org.matrix.custom.html`), and what was left out."""
    return _sanitized(formatted_body, for_page=False)


def page_html(formatted_body: str) -> str:
    """HTML for a web page of the platform's own origin: images become their alt text."""
    return _sanitized(formatted_body, for_page=True).html


def plain_text(formatted_body: str) -> tuple[str | None, str]:
    """(the first heading's text or None, the whole text in lines), as the page's summary."""
    parser = _Text()
    parser.feed(formatted_body)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return parser.heading, "\n".join(line for line in lines if line)
