"""An article's HTML made safe for the mini-app's page, and its plain text (pure).

A news article's `formatted_body` is whatever a staff member's client sent: the page shows it
in the bridge's own origin, next to a pupil's data, so nothing but the allow-list of
`sferum_shared/html.py` gets through, and an `<img>` (`mxc://` media the page cannot fetch
without the viewer's access token) becomes its alt text in a placeholder.
"""

from __future__ import annotations

from sferum_shared.html import page_html, plain_text

__all__ = ["plain_text", "sanitize"]


def sanitize(formatted_body: str) -> str:
    """The allow-listed HTML of `formatted_body`, well formed (every tag it opens is closed)."""
    return page_html(formatted_body)
