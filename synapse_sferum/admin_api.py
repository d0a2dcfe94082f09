"""The module's admin HTTP API, used by `sferumctl` and the diary bridge.

Served under /_synapse/client/sferum/admin/v1/ on Synapse's client listener, authenticated with
the module's `admin_api_secret` as a bearer token (not a Matrix access token: the CLI runs next to
the server and needs no account).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from sferum_shared import matrix
from sferum_shared.adminapi import PREFIX, ROSTER_NAME_PARAM
from sferum_shared.model import Member, RosterError
from sferum_shared.vocabulary import Key
from synapse_sferum.accounts import AccountIssuer, AccountRequestError
from synapse_sferum.articles import ArticleRequest, Articles
from synapse_sferum.bodies import json_object
from synapse_sferum.personal import NoAccount, PersonalData, UnknownPerson
from synapse_sferum.policy import stickers
from synapse_sferum.policy.articles import ArticleError, check_key
from synapse_sferum.provisioner import Provisioner
from synapse_sferum.registration import Registrar, RegistrationRefusedMany
from synapse_sferum.roster.oneroster import parse_roster_zip
from synapse_sferum.service import DirectoryService
from synapse_sferum.stickers import StickerPacks
from synapse_sferum.upgrades import RoomUpgrades, UpgradeRefused

logger = logging.getLogger(__name__)

#: Who issued a code through this API (sferumctl): the server's operator.
ISSUED_BY_ADMIN = "admin-api"

MAX_ROSTER_BYTES = 512 * 1024 * 1024

T = TypeVar("T")

Handler = Callable[[Any], Awaitable[tuple[int, Any]]]


class _Endpoint(DirectServeJsonResource):
    """One POST endpoint behind the admin secret."""

    def __init__(self, secret: str, handler: Handler):
        super().__init__()
        self._secret = secret.encode()
        self._handler = handler

    async def _async_render_POST(self, request: Any) -> tuple[int, Any]:
        header = request.getHeader("Authorization") or ""
        token = header.removeprefix("Bearer ").encode()
        if not header.startswith("Bearer ") or not hmac.compare_digest(token, self._secret):
            raise SynapseError(
                401, "A valid admin_api_secret bearer token is required", Codes.UNAUTHORIZED
            )
        return await self._handler(request)


class AdminApi:
    def __init__(
        self,
        api: ModuleApi,
        directory: DirectoryService,
        provisioner: Provisioner,
        issuer: AccountIssuer,
        registrar: Registrar,
        sticker_packs: StickerPacks,
        personal: PersonalData,
        upgrades: RoomUpgrades,
        articles: Articles,
        secret: str,
    ):
        self._api = api
        self._directory = directory
        self._provisioner = provisioner
        self._issuer = issuer
        self._registrar = registrar
        self._stickers_rooms = sticker_packs
        self._personal = personal
        self._upgrades = upgrades
        self._articles = articles
        self._secret = secret

    def register(self) -> None:
        for path, handler in (
            ("roster", self._import_roster),
            ("accounts", self._issue_accounts),
            ("accounts-reset", self._reset_accounts),
            ("reconcile", self._reconcile),
            ("reconcile-status", self._reconcile_status),
            ("link-codes", self._issue_link_codes),
            ("who", self._who),
            ("rtc-facts", self._rtc_facts),
            ("rooms", self._rooms),
            ("rooms-upgrade", self._upgrade_room),
            ("stickers", self._stickers),
            ("news-post", self._news_post),
            ("person-data", self._person_data),
            ("person-redact", self._person_redact),
            ("person-redact-status", self._person_redact_status),
            ("person-redact-more", self._person_redact_more),
            ("person-erase", self._person_erase),
        ):
            self._api.register_web_resource(f"{PREFIX}/{path}", _Endpoint(self._secret, handler))

    async def _import_roster(self, request: Any) -> tuple[int, Any]:
        dry_run = request.args.get(b"dry_run", [b"false"])[0] in (b"true", b"1")
        # The name errors use for the zip itself (the CLI sends the file or folder name).
        name_arg = request.args.get(ROSTER_NAME_PARAM.encode(), [b"roster.zip"])[0]
        name = name_arg.decode("utf-8", "replace")[:200]
        data = request.content.read(MAX_ROSTER_BYTES + 1)
        if len(data) > MAX_ROSTER_BYTES:
            raise SynapseError(413, "Roster zip is larger than 512 MiB", Codes.TOO_LARGE)
        try:
            change = await self._api.defer_to_thread(
                parse_roster_zip, data, self._directory.today(), name
            )
            report = await self._directory.apply_import(change, dry_run)
        except RosterError as e:
            problems = [
                {"file": p.file, "line": p.line, "column": p.column, "message": p.message}
                for p in e.problems
            ]
            raise SynapseError(
                400,
                f"The roster has {len(problems)} problem(s); nothing was changed",
                Codes.INVALID_PARAM,
                {Key.PROBLEMS: problems},
            ) from e
        if report.wrote_anything and not dry_run:
            renamed = await self._directory.users_of(report.changed_person_ids)
            self._provisioner.request(check_names_of=renamed)
        return 200, {"counts": report.to_json(), "dry_run": dry_run}

    async def _upgrade_room(self, request: Any) -> tuple[int, Any]:
        """Upgrades a provisioned room as the platform's bot: {"room": ID or alias,
        "version": optional, the server's default room version if left out}."""
        body = json_object(request)
        room, version = body.get("room"), body.get("version")
        if not isinstance(room, str) or not (version is None or isinstance(version, str)):
            raise SynapseError(
                400,
                'body must be {"room": room ID or alias, "version": room version (optional)}',
                Codes.INVALID_PARAM,
            )
        try:
            upgraded = await self._upgrades.upgrade(room, version)
        except UpgradeRefused as e:
            refusal = e.refusal
            raise SynapseError(refusal.status, refusal.message, refusal.errcode) from e
        return 200, upgraded.to_json()

    async def _issue_accounts(self, request: Any) -> tuple[int, Any]:
        body = json_object(request)
        snapshot = await self._directory.snapshot()
        try:
            if isinstance(body.get("class"), str):
                person_ids = self._issuer.people_of_class(snapshot, body["class"])
            elif isinstance(body.get("persons"), list) and all(
                isinstance(p, str) for p in body["persons"]
            ):
                person_ids = list(dict.fromkeys(body["persons"]))
            else:
                raise AccountRequestError(
                    'body must be {"persons": [sourcedId, ...]} or {"class": classId}'
                )
            issued = await self._issuer.issue(snapshot, person_ids)
        except AccountRequestError as e:
            raise SynapseError(400, str(e), Codes.INVALID_PARAM) from e
        if any(a.password for a in issued):
            self._provisioner.request()
        return 200, {"accounts": [a.to_json() for a in issued]}

    async def _reset_accounts(self, request: Any) -> tuple[int, Any]:
        persons = json_object(request).get("persons")
        if not (
            isinstance(persons, list) and persons and all(isinstance(p, str) for p in persons)
        ):
            raise SynapseError(
                400, 'body must be {"persons": [sourcedId, ...]}', Codes.INVALID_PARAM
            )
        try:
            reset = await self._issuer.reset(
                await self._directory.snapshot(), list(dict.fromkeys(persons))
            )
        except AccountRequestError as e:
            raise SynapseError(400, str(e), Codes.INVALID_PARAM) from e
        return 200, {"accounts": [a.to_json() for a in reset]}

    async def _issue_link_codes(self, request: Any) -> tuple[int, Any]:
        """Codes for people ("persons": all or nothing) or a class (pupils, their guardians
        and teachers; whoever may not register is skipped and reported)."""
        body = json_object(request)
        days = body.get("expires_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365
        ):
            raise SynapseError(
                400,
                f"expires_days must be a whole number from 1 to 365, got {days!r}",
                Codes.INVALID_PARAM,
            )
        snapshot = await self._directory.snapshot()
        try:
            if isinstance(body.get("class"), str):
                person_ids = self._issuer.class_and_families(snapshot, body["class"])
                without_account = [
                    p for p in person_ids if await self._directory.user_for_person(p) is None
                ]
                issued, skipped = await self._registrar.issue_codes(
                    without_account, days, issued_by=ISSUED_BY_ADMIN, skip_refused=True
                )
            elif (
                isinstance(body.get("persons"), list)
                and body["persons"]
                and all(isinstance(p, str) for p in body["persons"])
            ):
                persons = list(dict.fromkeys(body["persons"]))
                issued, skipped = await self._registrar.issue_codes(
                    persons, days, issued_by=ISSUED_BY_ADMIN
                )
            else:
                raise AccountRequestError(
                    'body must be {"persons": [sourcedId, ...]} or {"class": classId}'
                )
        except (AccountRequestError, RegistrationRefusedMany) as e:
            raise SynapseError(400, str(e), Codes.INVALID_PARAM) from e
        return 200, {
            "codes": [c.to_json() for c in issued],
            "skipped": [{"person": r.person_id, "reason": r.reason.value} for r in skipped],
        }

    async def _reconcile(self, request: Any) -> tuple[int, Any]:
        """Starts a run (or joins the one already waiting to start) and answers at once with
        its number and where it is: a school's first run takes minutes, longer than a client
        should hold a request open; `reconcile-status` follows it."""
        return 200, self._run_status(self._provisioner.request())

    async def _reconcile_status(self, request: Any) -> tuple[int, Any]:
        """Where run {"run": n} is; its report ("reconcile") once it has finished."""
        run = json_object(request).get("run")
        if isinstance(run, bool) or not isinstance(run, int):
            raise SynapseError(400, 'body must be {"run": run number}', Codes.INVALID_PARAM)
        return 200, self._run_status(run)

    def _run_status(self, run: int) -> dict[str, Any]:
        status = self._provisioner.status(run)
        if status is None:
            raise SynapseError(
                404,
                f"no reconcile run {run} was asked for since the server started",
                Codes.NOT_FOUND,
            )
        return status

    async def _rooms(self, request: Any) -> tuple[int, Any]:
        """Room IDs of provisioned rooms by their names in the alias scheme ({"aliases": [...]}).

        Rooms that belong to one person (a pupil's diary) have no alias in Synapse's directory,
        where anyone could look them up; the bridge finds them here. Unknown names are left out.
        """
        wanted = json_object(request).get("aliases")
        if not (isinstance(wanted, list) and all(isinstance(a, str) for a in wanted)):
            raise SynapseError(
                400, 'body must be {"aliases": [alias localpart, ...]}', Codes.INVALID_PARAM
            )
        by_alias = {
            key.alias_localpart(): room_id
            for key, room_id in (await self._directory.all_rooms()).items()
        }
        return 200, {"rooms": {a: by_alias[a] for a in dict.fromkeys(wanted) if a in by_alias}}

    async def _stickers(self, request: Any) -> tuple[int, Any]:
        """Puts an image pack into the spaces ({"pack": content, "class"?: sourcedId}) and
        has every member's clients offer it."""
        body = json_object(request)
        pack, class_id = body.get("pack"), body.get("class")
        if (
            not isinstance(pack, dict)
            or not isinstance(pack.get("images"), dict)
            or not pack["images"]
            or not (class_id is None or isinstance(class_id, str))
        ):
            raise SynapseError(
                400,
                'body must be {"pack": {"pack": {...}, "images": {shortcode: {...}}}, '
                '"class"?: sourcedId}',
                Codes.INVALID_PARAM,
            )
        room_ids = await self._stickers_rooms.target_spaces(class_id)
        if not room_ids:
            where = f"class {class_id!r}" if class_id else "any school"
            raise SynapseError(404, f"No space of {where} has been made yet", Codes.NOT_FOUND)
        state_key = stickers.CLASS_PACK if class_id else stickers.SCHOOL_PACK
        await self._stickers_rooms.publish(room_ids, state_key, pack)
        members = await self._stickers_rooms.sync_members()
        return 200, {"rooms": room_ids, "accounts_updated": members}

    async def _news_post(self, request: Any) -> tuple[int, Any]:
        """Posts an article into a school's news as its author, once per key, and pins it if
        asked ({"author", "key", "html", "title"?, "pin"?, "school"?})."""
        body = json_object(request)
        author, key, text = body.get("author"), body.get("key"), body.get("html")
        title, pin, school = body.get("title"), body.get("pin", False), body.get("school")
        if not (
            isinstance(author, str)
            and isinstance(key, str)
            and isinstance(text, str)
            and isinstance(title, str | None)
            and isinstance(pin, bool)
            and isinstance(school, str | None)
        ):
            raise SynapseError(
                400,
                'body must be {"author": sourcedId, "key": str, "html": str, "title"?: str, '
                '"pin"?: bool, "school"?: orgId}',
                Codes.INVALID_PARAM,
            )
        try:
            article = ArticleRequest(author, check_key(key), text, title, pin, school)
            return 200, await self._articles.post(article)
        except ArticleError as e:
            raise SynapseError(400, str(e), Codes.INVALID_PARAM) from None

    async def _who(self, request: Any) -> tuple[int, Any]:
        """The directory's view of one account ({"user_id"}) or one person ({"person"}).

        The diary bridge asks this before it shows marks, so it needs no copy of the directory
        that could lag behind a roster change (a guardian removed yesterday sees nothing today).
        """
        body = json_object(request)
        user_id, person_id = body.get("user_id"), body.get("person")
        if isinstance(user_id, str) and person_id is None:
            member = await self._directory.get_member(user_id)
        elif isinstance(person_id, str) and user_id is None:
            member = await self._directory.member_for_person(person_id)
            user_id = await self._directory.user_for_person(person_id)
        else:
            raise SynapseError(
                400,
                'body must be {"user_id": "@x:server"} or {"person": sourcedId}',
                Codes.INVALID_PARAM,
            )
        return 200, who_json(user_id, member)

    async def _rtc_facts(self, request: Any) -> tuple[int, Any]:
        """What the SFU's auth service needs to grant a call token ({"user_id", "room_id"}).

        The module owns the directory and knows which provisioned room is which, so the SFU
        asks here rather than keep copies: the room's kind and what it belongs to, the caller's
        membership of it, and the caller's place in the school (`who`'s answer). Broadcast
        viewers are not members of the broadcast room, so their membership is simply null.
        For a room the platform did not make, `direct_chat` says whether it is a direct chat
        the caller may call in: two joined members, both of the directory.
        """
        body = json_object(request)
        user_id, room_id = body.get("user_id"), body.get("room_id")
        if not isinstance(user_id, str) or not isinstance(room_id, str):
            raise SynapseError(
                400,
                'body must be {"user_id": "@x:server", "room_id": "!room:server"}',
                Codes.INVALID_PARAM,
            )
        key = await self._directory.room_key(room_id)
        member = await self._directory.get_member(user_id)
        # Only a room the platform did not make needs all its members (to tell a direct chat);
        # a provisioned one, the caller's own membership.
        memberships = await self._memberships(room_id, None if key is None else user_id)
        membership = memberships.get(user_id)
        direct_chat = False
        if key is None and membership == "join":
            others = [u for u, m in memberships.items() if m == "join" and u != user_id]
            direct_chat = (
                len(others) == 1 and await self._directory.get_member(others[0]) is not None
            )
        return 200, {
            "user_id": user_id,
            "room_id": room_id,
            "room_kind": key.kind.value if key else None,
            "room_scope": key.scope_id if key else None,
            "membership": membership,
            "direct_chat": direct_chat,
            "member": who_json(user_id, member) if member else None,
        }

    async def _person_data(self, request: Any) -> tuple[int, Any]:
        """The module's rows about a person ({"person"}) by table, and their uploads; read-only."""
        return 200, await self._personal_call(self._personal.data, request)

    async def _person_redact(self, request: Any) -> tuple[int, Any]:
        """Starts redacting the events of a person's account ({"person"}); {"redact_id"}."""
        redact_id = await self._personal_call(self._personal.start_redaction, request)
        return 200, {"redact_id": redact_id}

    async def _person_redact_status(self, request: Any) -> tuple[int, Any]:
        redact_id = json_object(request).get("redact_id")
        if not isinstance(redact_id, str):
            raise SynapseError(400, 'body must be {"redact_id": "..."}', Codes.INVALID_PARAM)
        status = await self._personal.redaction_status(redact_id)
        if status is None:
            raise SynapseError(404, f"no redaction {redact_id!r} (kept 24 h)", Codes.NOT_FOUND)
        return 200, status

    async def _person_redact_more(self, request: Any) -> tuple[int, Any]:
        """Redacts a batch of the person's events that Synapse's redaction leaves ({"person"});
        {"redacted": {type: n}, "failed": [...], "more": bool}."""
        return 200, await self._personal_call(self._personal.redact_more, request)

    async def _person_erase(self, request: Any) -> tuple[int, Any]:
        """Erases a person's account and the module's rows about them ({"person"})."""
        return 200, await self._personal_call(self._personal.erase, request)

    async def _personal_call(self, action: Callable[[str], Awaitable[T]], request: Any) -> T:
        person_id = json_object(request).get("person")
        if not isinstance(person_id, str) or not person_id:
            raise SynapseError(400, 'body must be {"person": sourcedId}', Codes.INVALID_PARAM)
        try:
            return await action(person_id)
        except UnknownPerson:
            raise SynapseError(
                404, f"no person {person_id!r} on the platform", Codes.NOT_FOUND
            ) from None
        except NoAccount:
            raise SynapseError(
                400, f"{person_id!r} has no account on the platform", Codes.INVALID_PARAM
            ) from None

    async def _memberships(self, room_id: str, user_id: str | None) -> dict[str, str]:
        """Memberships in the room's current state by user ID: one user's, or everyone's."""
        state = await self._api.get_room_state(room_id, [(matrix.MEMBER, user_id)])
        memberships = {}
        for (_, state_key), event in state.items():
            value = event.content.get("membership")
            if isinstance(value, str):
                memberships[state_key] = value
        return memberships


def who_json(user_id: str | None, member: Member | None) -> dict[str, Any]:
    """`who`'s answer; an unknown account or person is a person of null with no relations."""
    ids = ("student_class_ids", "teacher_class_ids", "child_ids", "child_class_ids")
    return {
        "user_id": user_id,
        "person": member.person_id if member else None,
        "roles": sorted(r.value for r in member.roles) if member else [],
        "org_ids": sorted(member.org_ids) if member else [],
        **{name: sorted(getattr(member, name)) if member else [] for name in ids},
        "guardian_ids": sorted(member.guardian_ids) if member else [],
    }
