"""Where each diary item goes, as plain data: the posts the rooms should show now (pure).

Marks go to the pupil's diary room only (the pupil, the pupil's guardians and the platform);
homework and timetable changes to the class chat (a subject group's own chat for its items);
the morning digest of the day's lessons to each class chat once the digest time has passed.
Rooms are named by the module's alias scheme, so the bridge never keeps a room list of its own.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time

import attrs

from bridges.diary.model import DiarySnapshot, Lesson, LessonStatus
from bridges.diary.render import Rendered, Renderer
from sferum_shared.rooms import RoomKey, RoomKind

# Kinds whose items vanish from a complete snapshot when the diary deletes them: their messages
# are then redacted. Lessons and digests belong to their day and are never taken back.
DELETABLE_KINDS = frozenset({"mark", "homework"})


@attrs.frozen
class Post:
    key: str  # the item's key (model `key`), or digest:<class>:<date>
    kind: str  # mark, homework, lesson, digest
    room_alias: str  # the alias localpart of the target room: diary-<pupil>, class-<class>
    rendered: Rendered

    @property
    def content_hash(self) -> str:
        """Changes exactly when the message must change (text or target room)."""
        raw = json.dumps([self.room_alias, self.rendered.body, self.rendered.html])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _diary(student_id: str) -> str:
    return RoomKey(RoomKind.DIARY, student_id).alias_localpart()


def _class_chat(class_id: str) -> str:
    return RoomKey(RoomKind.CLASS_CHAT, class_id).alias_localpart()


def plan(
    snapshot: DiarySnapshot, renderer: Renderer, now: datetime, digest_at: time
) -> list[Post]:
    """The posts for this snapshot at `now` (timezone-aware, in the school's time zone)."""
    posts = [Post(m.key, "mark", _diary(m.student_id), renderer.mark(m)) for m in snapshot.marks]
    posts += [
        Post(h.key, "homework", _class_chat(h.class_id), renderer.homework(h))
        for h in snapshot.homework
    ]
    today = now.date()
    posts += [
        Post(lesson.key, "lesson", _class_chat(lesson.class_id), renderer.lesson_change(lesson))
        for lesson in snapshot.lessons
        if lesson.status is not LessonStatus.NORMAL and lesson.start.date() >= today
    ]
    if now.timetz().replace(tzinfo=None) >= digest_at:
        for class_id, lessons in sorted(_lessons_by_class_on(snapshot.lessons, now).items()):
            posts.append(
                Post(
                    f"digest:{class_id}:{today.isoformat()}",
                    "digest",
                    _class_chat(class_id),
                    renderer.digest(today, lessons),
                )
            )
    return posts


def _lessons_by_class_on(lessons: Iterable[Lesson], now: datetime) -> dict[str, list[Lesson]]:
    day: dict[str, list[Lesson]] = defaultdict(list)
    for lesson in lessons:
        if lesson.start.astimezone(now.tzinfo).date() == now.date():
            day[lesson.class_id].append(lesson)
    return {c: sorted(ls, key=lambda lesson: lesson.start) for c, ls in day.items()}


def kind_of_key(key: str) -> str:
    return key.split(":", 1)[0]
