"""Transactions over the articles posted into school news through the admin API, by key."""

from __future__ import annotations

from typing import Any

import attrs

Txn = Any


@attrs.frozen
class PostedArticle:
    room_id: str
    event_id: str  # the post (an edit changes what it shows, not its ID)
    author: str  # the sender's user ID
    posted_ts: int
    content_hash: str  # of the content the post shows now


def article_txn(txn: Txn, org_id: str, key: str) -> PostedArticle | None:
    txn.execute(
        "SELECT room_id, event_id, author, posted_ts, content_hash FROM sferum_articles"
        " WHERE org_id = ? AND article_key = ?",
        (org_id, key),
    )
    row = txn.fetchone()
    return None if row is None else PostedArticle(row[0], row[1], row[2], int(row[3]), row[4])


def record_article_txn(txn: Txn, org_id: str, key: str, article: PostedArticle) -> None:
    """Remembers the post under its key (a post that replaces a removed one takes its key)."""
    txn.execute("DELETE FROM sferum_articles WHERE org_id = ? AND article_key = ?", (org_id, key))
    txn.execute(
        "INSERT INTO sferum_articles (org_id, article_key, room_id, event_id, author, posted_ts,"
        " content_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            org_id,
            key,
            article.room_id,
            article.event_id,
            article.author,
            article.posted_ts,
            article.content_hash,
        ),
    )
