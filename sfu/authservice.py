"""The SFU's auth routes: lk-jwt-service's `/get_token` and legacy `/sfu/get`, with school rules.

Element Call and other MatrixRTC clients already speak this contract (reference sfu.md §1.3):
an OpenID token and the caller's member in, `{"url", "jwt"}` out, Matrix-style errors. What is
added is the policy lk-jwt-service lacks (`sfu.grants`):

1. the OpenID token is checked at our homeserver's `/_matrix/federation/v1/openid/userinfo`;
   only our server's tokens are taken (a closed platform), and the claimed user must be the
   token's `sub`;
2. the module's admin API `rtc-facts` says what the room is and who the caller is in the school;
3. `sfu.grants.decide` turns that into a grant or a refusal (403 with `ru.sferum.reason`);
4. `sfu.tokens.issue` signs an HS256 token of at most an hour for the hashed room and identity,
   with the unhashed Matrix room, user and device in a private claim for our own SFU to
   re-check membership with (`sfu.membership`).

Every step fails closed: a homeserver or directory that cannot answer gives no token.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from sferum_shared import Clock, openid
from sferum_shared.adminapi import AdminApi, Refused, Unexpected, parse_object
from sferum_shared.http import Unreachable
from sferum_shared.ids import RoomId, UserId
from sferum_shared.vocabulary import Reason
from sferum_shared.web import ApiError, read_json_object, send
from sfu import tokens
from sfu.config import SfuConfig
from sfu.delayed import DelayedLeave, DelegationError, parse_delegation
from sfu.grants import Facts, Grant, Refusal, decide, facts_from_json
from sfu.membership import Session

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

# The request bodies lk-jwt-service accepts (`requests.go`); unknown fields are refused, as its
# `DisallowUnknownFields` does, so a client speaking another version of the contract hears so.
_OPENID_FIELDS = frozenset({"access_token", "token_type", "matrix_server_name", "expires_in"})
_MEMBER_FIELDS = frozenset({"id", "claimed_user_id", "claimed_device_id"})
_DELAY_FIELDS = frozenset({"delay_id", "delay_timeout", "delay_cs_api_url"})
_GET_TOKEN_FIELDS = frozenset({"room_id", "slot_id", "openid_token", "member"}) | _DELAY_FIELDS
_LEGACY_FIELDS = frozenset({"room", "openid_token", "device_id"}) | _DELAY_FIELDS



def _bad_json(message: str) -> ApiError:
    return ApiError(400, "M_BAD_JSON", message)


def _unauthorized(reason: str, message: str = "The request could not be authorised") -> ApiError:
    return ApiError(401, "M_UNAUTHORIZED", message, reason)


def _other_server() -> ApiError:
    return _unauthorized(Reason.SFU_OTHER_SERVER, "Only accounts of this school's server may call")


@attrs.frozen
class TokenRequest:
    """One validated request, whichever route it came by."""

    room_id: RoomId
    slot_id: str
    access_token: str
    matrix_server_name: str
    claimed_user_id: str | None  # /sfu/get claims no user: the token's `sub` is the caller
    device_id: str
    member_id: str | None  # None: legacy identity `@u:hs:DEVICE`
    delayed_leave: DelayedLeave | None = None  # MSC4140 delegation (`sfu.delayed`)


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad_json(f"unknown field(s) in {where}: {', '.join(unknown)}")


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""


def _openid(body: Mapping[str, Any]) -> tuple[str, str]:
    raw = body.get("openid_token")
    if not isinstance(raw, dict):
        raise _bad_json("The request body is missing `openid_token`")
    _check_fields(raw, _OPENID_FIELDS, "openid_token")
    token, server = _text(raw, "access_token"), _text(raw, "matrix_server_name")
    if not token or not server:
        raise _bad_json(
            "The request body `openid_token` is missing `access_token` or `matrix_server_name`"
        )
    return token, server


def _delegation(body: Mapping[str, Any]) -> DelayedLeave | None:
    """The delayed leave event the client hands over (`sfu.delayed`), if any."""
    try:
        return parse_delegation(body)
    except DelegationError as e:
        raise _bad_json(str(e)) from None


def parse_get_token(body: Mapping[str, Any]) -> TokenRequest:
    """A `/get_token` body: `{room_id, slot_id, openid_token, member}`."""
    _check_fields(body, _GET_TOKEN_FIELDS, "the request body")
    room_id, slot_id = _text(body, "room_id"), _text(body, "slot_id")
    if not room_id or not slot_id:
        raise _bad_json("The request body is missing `room_id` or `slot_id`")
    member = body.get("member")
    if not isinstance(member, dict):
        raise _bad_json("The request body is missing `member`")
    _check_fields(member, _MEMBER_FIELDS, "member")
    member_id = _text(member, "id")
    user_id, device_id = _text(member, "claimed_user_id"), _text(member, "claimed_device_id")
    if not member_id or not user_id or not device_id:
        raise _bad_json(
            "The request body `member` is missing `id`, `claimed_user_id` or `claimed_device_id`"
        )
    token, server = _openid(body)
    delayed_leave = _delegation(body)
    return TokenRequest(
        RoomId(room_id), slot_id, token, server, user_id, device_id, member_id, delayed_leave
    )


def parse_legacy(body: Mapping[str, Any]) -> TokenRequest:
    """A legacy `/sfu/get` body: `{room, openid_token, device_id}`."""
    _check_fields(body, _LEGACY_FIELDS, "the request body")
    room_id = _text(body, "room")
    if not room_id:
        raise _bad_json("Missing room parameter")
    device_id = _text(body, "device_id")
    if not device_id:
        # lk-jwt-service lets it be empty; every device of a user would then share one name.
        raise _bad_json("Missing device_id parameter")
    token, server = _openid(body)
    delayed_leave = _delegation(body)
    return TokenRequest(
        RoomId(room_id), tokens.LEGACY_SLOT_ID, token, server, None, device_id, None, delayed_leave
    )


CameraPolicy = Callable[[str], Awaitable[bool]]


def sfu_url_for(config: SfuConfig, grant: Grant, identity: str) -> str:
    """Where this participant connects: a broadcast's viewers are spread over the edges.

    Everyone else goes to the origin (the process named by `sfu_url`): a lesson's or a
    meeting's participants must see each other, and the teacher must find them to moderate.
    Hidden viewers (a broadcast's) see nobody and nobody sees them, so an edge serves them as
    well as the origin, in either protocol. A viewer's edge follows from the identity's hash,
    so a reconnecting viewer lands on the same edge again.
    """
    if not grant.hidden or not config.edge_urls:
        return config.sfu_url
    digest = hashlib.sha256(identity.encode()).digest()
    return config.edge_urls[int.from_bytes(digest[:4], "big") % len(config.edge_urls)]


async def _no_pupil_cameras(room_id: str) -> bool:
    return False


class AuthService:
    """The auth routes, with the homeserver and the module's admin API behind them."""

    def __init__(
        self,
        config: SfuConfig,
        clock: Clock,
        pupil_camera_allowed: CameraPolicy = _no_pupil_cameras,
        on_refusal: Callable[[str], None] = lambda reason: None,
    ):
        self._config = config
        self._clock = clock
        self._pupil_camera_allowed = pupil_camera_allowed
        self._on_refusal = on_refusal  # told each refusal's reason (the SFU's metrics)
        self._http: aiohttp.ClientSession | None = None

    # -- the aiohttp application --------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/get_token", self._handle_get_token)
        app.router.add_post("/sfu/get", self._handle_legacy)
        for path in ("/get_token", "/sfu/get"):
            app.router.add_route("OPTIONS", path, self._preflight)
        app.cleanup_ctx.append(self._session)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.add_routes(app)
        return app

    async def _session(self, app: web.Application) -> AsyncIterator[None]:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            yield
        finally:
            await self._http.close()
            self._http = None

    async def _preflight(self, request: web.Request) -> web.Response:
        # Browsers (Element Call, our lesson page) call from another origin.
        return web.Response(status=204, headers=_CORS)

    async def _handle_get_token(self, request: web.Request) -> web.Response:
        return await self._answer(request, parse_get_token)

    async def _handle_legacy(self, request: web.Request) -> web.Response:
        return await self._answer(request, parse_legacy)

    async def _answer(
        self, request: web.Request, parse: Callable[[Mapping[str, Any]], TokenRequest]
    ) -> web.Response:
        try:
            body = await read_json_object(request, MAX_BODY_BYTES)
            answer = await self.token_for(parse(body))
            return web.json_response(answer, headers=_CORS)
        except ApiError as e:
            self._on_refusal(e.reason or e.errcode)
            return e.response(_CORS)
        except Exception:
            logger.exception("sfu auth: unexpected failure; refusing")
            error = ApiError(500, "M_UNKNOWN", "Internal server error")
            self._on_refusal(error.errcode)
            return error.response(_CORS)

    # -- the flow -----------------------------------------------------------------------------

    async def token_for(self, req: TokenRequest) -> dict[str, str]:
        """`{"url", "jwt"}` for a validated request; ApiError with the refusal otherwise."""
        if not req.room_id.startswith("!"):
            raise _bad_json("`room_id` must be a Matrix room ID (!…)")
        if req.matrix_server_name != self._config.server_name:
            raise _other_server()
        user_id = await self.check_openid(req.access_token)
        if req.claimed_user_id is not None and req.claimed_user_id != user_id:
            logger.warning("sfu auth: %s claimed to be %s", user_id, req.claimed_user_id)
            raise _unauthorized(Reason.SFU_CLAIMED_USER_MISMATCH)
        grant = await self.grant_for(user_id, req.room_id)
        if req.member_id is None:
            identity = tokens.legacy_identity(user_id, req.device_id)
        else:
            identity = tokens.identity(user_id, req.device_id, req.member_id)
        jwt = tokens.issue(
            grant,
            tokens.room_name(req.room_id, req.slot_id),
            identity,
            self._config.jwt_secret,
            int(self._clock.seconds()),
            self._config.token_ttl_seconds,
            self._config.jwt_issuer,
            private_claims={
                **Session(req.room_id, user_id, req.device_id).claims(),
                **(req.delayed_leave.claims() if req.delayed_leave else {}),
            },
        )
        logger.info(
            "sfu auth: %s in %s: publish %s, subscribe %s",
            user_id,
            req.room_id,
            list(grant.can_publish_sources) if grant.can_publish else "nothing",
            grant.can_subscribe,
        )
        return {"url": sfu_url_for(self._config, grant, identity), "jwt": jwt}

    async def facts_for(self, user_id: UserId, room_id: RoomId) -> Facts:
        """The directory's facts on one user in one room; ApiError (503) if it cannot answer.

        Also what `sfu.membership` re-asks for sessions already in a call.
        """
        facts_json = await self._rtc_facts(user_id, room_id)
        allowed = await self._pupil_camera_allowed(room_id)
        return facts_from_json(facts_json, pupil_camera_allowed=allowed)

    async def grant_for(self, user_id: UserId, room_id: RoomId) -> Grant:
        decision = decide(await self.facts_for(user_id, room_id))
        if isinstance(decision, Refusal):
            logger.info("sfu auth: %s refused in %s: %s", user_id, room_id, decision.value)
            raise ApiError(403, "M_FORBIDDEN", decision.message, decision.value)
        return decision

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("AuthService used outside its aiohttp application")
        return self._http

    async def check_openid(self, access_token: str) -> UserId:
        """The user an OpenID token stands for, asked of our homeserver; 401 otherwise."""
        request = openid.userinfo_request(self._config.homeserver_url, access_token)
        try:
            return openid.user_of(await send(self._client(), request), self._config.server_name)
        except Unreachable as e:
            logger.error("sfu auth: OpenID check failed: %s", e)
            raise ApiError(503, "M_UNKNOWN", "The homeserver is unavailable") from None
        except openid.OpenIdRefused as e:
            if e.failure is openid.OpenIdFailure.REJECTED:
                raise _unauthorized(Reason.SFU_OPENID_REJECTED) from None
            if e.failure is openid.OpenIdFailure.OTHER_SERVER:
                raise _other_server() from None
            logger.error("sfu auth: OpenID check: %s", e)
            raise ApiError(503, "M_UNKNOWN", "The homeserver could not check the token") from None

    async def _rtc_facts(self, user_id: UserId, room_id: RoomId) -> dict[str, Any]:
        api = AdminApi(self._config.admin_api_url, self._config.admin_api_secret)
        try:
            return parse_object(await send(self._client(), api.rtc_facts(user_id, room_id)))
        except Unreachable as e:
            logger.error("sfu auth: rtc-facts failed: %s", e)
            raise ApiError(503, "M_UNKNOWN", "The school directory is unavailable") from None
        except (Refused, Unexpected) as e:
            logger.error("sfu auth: rtc-facts of %s in %s: %s", user_id, room_id, e)
            raise ApiError(503, "M_UNKNOWN", "The school directory refused the lookup") from None


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}
