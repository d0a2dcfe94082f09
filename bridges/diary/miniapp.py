"""The diary mini-app: a widget page in diary rooms (marks), class chats (homework, timetable)
and class news rooms (the school's recent articles, `news.py`).

The page is served by the bridge and shown by Element in an iframe. Everything in the widget's
URL (room, kind, scope) is unauthenticated: anyone can open `/app?kind=diary&scope=<any pupil>`.
So the page shows nothing by itself. It asks the Matrix client for an OpenID token through the
widget API (`get_openid`), and the bridge:

1. checks the token at the homeserver's `/_matrix/federation/v1/openid/userinfo`, which says
   whose token it is (and insists the token is from our own homeserver: a token of another
   server would be checked by that server, which we do not trust with our pupils);
2. asks the module's admin API `who` about the account and, for a diary, about the pupil;
3. applies `access.py` and only then returns data (for news, read from the room as the bot).

Pure parts (views of a snapshot, the widget's state event) are plain functions; `MiniApp` holds
the thin HTTP glue around them.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import jinja2
from aiohttp import web

from bridges.diary.access import Viewer, may_view_class, may_view_marks
from bridges.diary.config import BridgeConfig
from bridges.diary.ical_feed import feed_path
from bridges.diary.matrix import MatrixRefused, MatrixUnavailable
from bridges.diary.model import DiarySnapshot, LessonStatus
from bridges.diary.news import NewsUnavailable, articles, events_of, messages_request
from bridges.diary.render import bare_room, hhmm, ru_date
from sferum_shared import Clock, matrix
from sferum_shared.adminapi import AdminApi, Refused, Unexpected, parse_object
from sferum_shared.http import Unreachable
from sferum_shared.ids import RoomId, UserId
from sferum_shared.openid import OpenIdFailure, OpenIdRefused, user_of, userinfo_request
from sferum_shared.rooms import RoomKey, RoomKind
from sferum_shared.vocabulary import WidgetId
from sferum_shared.web import ApiError, read_json_object, send, serve_asset
from sferum_shared.widgets import page_assets

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

KINDS = ("diary", "class", "news")
# What each kind shows and which room of the scope holds the widget.
_TITLES = {"diary": "Оценки", "class": "Задания и расписание", "news": "Новости"}
_MAX_BODY = 16 * 1024
# The page runs only its own script; it may be framed by any client (Element's origin varies).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_ASSETS = page_assets(STATIC, "miniapp.js", "miniapp.css")
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


# -- pure ------------------------------------------------------------------------------------


def widget_state(
    bridge_public_url: str, kind: str, scope: str, creator_user_id: str, title: str = ""
) -> tuple[str, dict[str, Any]]:
    """(state_key, content) of the `im.vector.modular.widgets` event for one room.

    The room ID is left to the client (`$matrix_room_id`): the page does not trust it anyway,
    and the same content then fits a room that is recreated. `kind` and `scope` say what to
    show; the bridge checks them against the viewer on every request.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    base = bridge_public_url.rstrip("/")
    url = (
        f"{base}/app?kind={kind}&scope={quote(scope, safe='')}"
        "&room=$matrix_room_id&theme=$org.matrix.msc2873.client_theme"
    )
    content = {
        "id": WidgetId.DIARY,
        "creatorUserId": creator_user_id,
        "type": "m.custom",
        "name": "Новости" if kind == "news" else "Дневник",
        "url": url,
        "data": {"title": title or _TITLES[kind]},
        "waitForIframeLoad": True,
    }
    return WidgetId.DIARY, content


def widget_rooms(class_ids: Iterable[str], pupil_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(alias localpart, kind, scope) of every room that gets the widget: diaries, class chats
    and class news rooms."""
    class_ids = list(class_ids)
    rooms = [(RoomKey(RoomKind.CLASS_CHAT, c).alias_localpart(), "class", c) for c in class_ids]
    rooms += [(RoomKey(RoomKind.CLASS_NEWS, c).alias_localpart(), "news", c) for c in class_ids]
    rooms += [(RoomKey(RoomKind.DIARY, p).alias_localpart(), "diary", p) for p in pupil_ids]
    return sorted(set(rooms))


def marks_view(snapshot: DiarySnapshot, pupil_id: str) -> list[dict[str, str]]:
    """The pupil's marks, newest first, as the page shows them."""
    marks = sorted(
        (m for m in snapshot.marks if m.student_id == pupil_id),
        key=lambda m: (m.work_date, m.source_id),
        reverse=True,
    )
    return [
        {
            "date": m.work_date.isoformat(),
            "day": ru_date(m.work_date),
            "subject": m.subject,
            "work": m.work,
            "category": m.category,
            "value": m.value,
            "comment": m.comment,
        }
        for m in marks
    ]


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def class_view(
    snapshot: DiarySnapshot, class_id: str, week_start: date, timezone: str
) -> dict[str, Any]:
    """Homework not yet due before the week, and the week's lessons, for one class."""
    tz = zoneinfo.ZoneInfo(timezone)
    week_end = week_start + timedelta(days=7)
    homework = sorted(
        (h for h in snapshot.homework if h.class_id == class_id and h.due >= week_start),
        key=lambda h: (h.due, h.source_id),
    )
    lessons = sorted(
        (
            lesson
            for lesson in snapshot.lessons
            if lesson.class_id == class_id
            and week_start <= lesson.start.astimezone(tz).date() < week_end
        ),
        key=lambda lesson: (lesson.start, lesson.source_id),
    )
    return {
        "week": week_start.isoformat(),
        "homework": [
            {
                "due": h.due.isoformat(),
                "day": ru_date(h.due),
                "subject": h.subject,
                "text": h.text,
            }
            for h in homework
        ],
        "lessons": [
            {
                "date": lesson.start.astimezone(tz).date().isoformat(),
                "day": ru_date(lesson.start.astimezone(tz)),
                "start": hhmm(lesson.start.astimezone(tz)),
                "end": hhmm(lesson.end.astimezone(tz)),
                "subject": lesson.subject,
                "room": bare_room(lesson.room),  # under the heading «Кабинет»
                "teacher": lesson.teacher,
                "status": lesson.status.value,
                "cancelled": lesson.status is LessonStatus.CANCELLED,
                "note": lesson.note,
            }
            for lesson in lessons
        ],
    }


# -- HTTP ------------------------------------------------------------------------------------


class MiniApp:
    """The page, its script and `POST /app/api/view`, over the bridge's current snapshot."""

    def __init__(
        self,
        config: BridgeConfig,
        snapshot: Callable[[], DiarySnapshot],
        clock: Clock,
        rooms: RoomResolver,
    ):
        self._config = config
        self._snapshot = snapshot
        self._clock = clock
        self._rooms = rooms
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> web.RouteTableDef:
        table = web.RouteTableDef()
        table.get("/app")(self._page)
        table.get("/app/static/{name}")(self._static)
        table.post("/app/api/view")(self._view)
        return table

    async def _page(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind", "")
        html = self._env.get_template("miniapp.html.j2").render(
            kind=kind if kind in KINDS else "",
            scope=request.query.get("scope", ""),
            title=_TITLES.get(kind, "Дневник"),
        )
        return web.Response(text=html, content_type="text/html", headers=_PAGE_HEADERS)

    async def _static(self, request: web.Request) -> web.Response:
        return serve_asset(_ASSETS, request)

    async def _view(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_object(request, _MAX_BODY)
            return web.json_response(await self.view(body), headers=_API_HEADERS)
        except ApiError as e:
            return e.response(_API_HEADERS)

    async def view(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the page may show to the holder of `body["openid"]`; raises ApiError if nothing."""
        kind, scope = body.get("kind"), body.get("scope")
        if kind not in KINDS or not isinstance(scope, str) or not scope:
            raise ApiError(400, "M_INVALID_PARAM", f"kind must be one of {KINDS}, with a scope")
        user_id = await self.check_openid(body.get("openid"))
        viewer = Viewer.from_who(await self.who({"user_id": user_id}))
        snapshot = self._snapshot()
        if kind == "diary":
            pupil = Viewer.from_who(await self.who({"person": scope}))
            if not may_view_marks(viewer, scope, pupil):
                logger.info("diary: mini-app: %s may not see the marks of %s", user_id, scope)
                raise ApiError(403, "M_FORBIDDEN", "not your diary")
            return {"kind": kind, "scope": scope, "marks": marks_view(snapshot, scope)}
        if not may_view_class(viewer, scope):
            logger.info("diary: mini-app: %s may not see class %s", user_id, scope)
            raise ApiError(403, "M_FORBIDDEN", "not your class")
        if kind == "news":
            return {"kind": kind, "scope": scope, "articles": await self.news(scope)}
        week = week_of(self._clock.today(zoneinfo.ZoneInfo(self._config.timezone)))
        if isinstance(body.get("week"), str):
            try:
                week = week_of(date.fromisoformat(body["week"]))
            except ValueError:
                raise ApiError(400, "M_INVALID_PARAM", "week must be YYYY-MM-DD") from None
        view = class_view(snapshot, scope, week, self._config.timezone)
        ical = feed_path(self._config.ical_secret, scope) if self._config.ical_secret else None
        return {"kind": kind, "scope": scope, **view, "ical": ical}

    async def news(self, class_id: str) -> list[dict[str, Any]]:
        """The class news room's recent school articles, read as the bot; [] with no room yet."""
        try:
            localpart = RoomKey(RoomKind.CLASS_NEWS, class_id).alias_localpart()
            room_id = await self._rooms.resolve(localpart)
            if room_id is None:
                return []
            request = messages_request(self._config.homeserver_url, self._config.as_token, room_id)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(15)) as http:
                events = events_of(await send(http, request))
        except (MatrixUnavailable, MatrixRefused, Unreachable, NewsUnavailable) as e:
            logger.error("diary: mini-app: the news of %s: %s", class_id, e)
            raise ApiError(503, "M_UNAVAILABLE", "the news are unavailable") from None
        return articles(events, self._config.bot_user_id, self._config.timezone)

    async def check_openid(self, openid: Any) -> UserId:
        """The user ID an OpenID token stands for, asked of our homeserver; 401 otherwise."""
        if not isinstance(openid, dict):
            raise ApiError(401, "M_UNKNOWN_TOKEN", "an OpenID token is required")
        token, server = openid.get("access_token"), openid.get("matrix_server_name")
        if not isinstance(token, str) or not token or server != self._config.server_name:
            raise ApiError(401, "M_UNKNOWN_TOKEN", "an OpenID token of this server is required")
        request = userinfo_request(self._config.homeserver_url, token)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(15)) as http:
                return user_of(await send(http, request), self._config.server_name)
        except Unreachable as e:
            logger.error("diary: mini-app: OpenID check failed: %s", e)
            raise ApiError(503, "M_UNAVAILABLE", "the homeserver is unavailable") from None
        except OpenIdRefused as e:
            if e.failure is OpenIdFailure.REJECTED:
                raise ApiError(401, "M_UNKNOWN_TOKEN", "the OpenID token is not valid") from None
            if e.failure is OpenIdFailure.OTHER_SERVER:
                message = "the token is of another server's user"
                raise ApiError(401, "M_UNKNOWN_TOKEN", message) from None
            logger.error("diary: mini-app: OpenID check: %s", e)
            message = "the homeserver could not check the token"
            raise ApiError(503, "M_UNAVAILABLE", message) from None

    async def who(self, query: dict[str, str]) -> dict[str, Any]:
        """The module's directory view of an account or a person (admin API `who`)."""
        api = AdminApi(self._config.admin_api_url, self._config.admin_api_secret)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(15)) as http:
                return parse_object(await send(http, api.who(query)))
        except Unreachable as e:
            logger.error("diary: mini-app: who failed: %s", e)
            raise ApiError(503, "M_UNAVAILABLE", "the directory is unavailable") from None
        except (Refused, Unexpected) as e:
            logger.error("diary: mini-app: who %s: %s", query, e)
            raise ApiError(503, "M_UNAVAILABLE", "the directory refused the lookup") from None


class WidgetClient(Protocol):
    """What `install_widgets` needs of the bridge's `BridgeClient`."""

    bot_user_id: str

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str: ...


class RoomResolver(Protocol):
    """What `install_widgets` needs of the bridge's `RoomDirectory`."""

    async def resolve(self, alias_localpart: str) -> RoomId | None: ...


async def install_widgets(
    client: WidgetClient,
    rooms: RoomResolver,
    bridge_public_url: str,
    class_ids: Iterable[str],
    pupil_ids: Iterable[str],
    done: set[str],
) -> int:
    """Puts the widget into every diary room and class chat that exists and lacks it.

    `client` is the bridge's `BridgeClient`, `rooms` its `RoomDirectory`; `done` remembers the
    rooms already handled in this process, so a sync costs no requests once every room has it.
    A room that does not exist yet is tried again at the next sync. Returns how many were put.
    """
    put = 0
    for localpart, kind, scope in widget_rooms(class_ids, pupil_ids):
        if localpart in done:
            continue
        room_id = await rooms.resolve(localpart)
        if room_id is None:
            continue
        state_key, content = widget_state(bridge_public_url, kind, scope, client.bot_user_id)
        try:
            await client.put_state(room_id, matrix.WIDGETS, state_key, content)
        except MatrixRefused as e:
            logger.error("diary: the widget of %s: %s", localpart, e)
            continue
        done.add(localpart)
        put += 1
    return put
