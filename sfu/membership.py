"""Ending calls of people who left or were banned (issue 5 point 8): the pure decisions.

A token is checked once, at join, and lives up to an hour; a pupil removed from the lesson room
(or banned) must not keep listening for the rest of it. So the server re-asks the directory for
every connected session every few seconds (:meth:`sfu.server.SfuServer.check_memberships`) and
ends those that :func:`still_allowed` no longer lets stay.

*Which* Matrix room and user a session stands for: the SFU's room and participant names are
hashed (MSC4195, so that a LiveKit server does not learn Matrix IDs), and the SFU cannot undo
the hash. The auth routes therefore add a private claim (:data:`Key.SESSION_CLAIM`) with the Matrix
room ID, user ID and device to the JWT they sign. This SFU is ours and already trusted with the
media, and the JWT goes only to the user it names, so nothing is revealed to anyone new; a
claim in the signed token (rather than a server-side table filled by `/get_token`) survives an
SFU restart and needs no expiry bookkeeping. A token without the claim (minted by hand with the
secret, as tests do) is not watched: :func:`session_of` returns None.

The rule is the grant rule, not a second one: a session may continue iff a fresh grant for the
same user and room would still let them join (:func:`sfu.grants.decide`) — in a lesson, still
joined and not banned; in a broadcast, still a member of the school.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from sferum_shared.ids import RoomId, UserId
from sferum_shared.vocabulary import Key
from sfu.grants import Facts, Refusal, decide

logger = logging.getLogger(__name__)

#: The JWT claim with the Matrix identity of a session: `{"room_id", "user_id", "device_id"}`.
#: WebSocket close code for a session ended because its user may no longer be in the call.
CLOSE_REMOVED = 4403
#: Close reasons are at most 123 bytes (RFC 6455 §5.5): the refusal's code fits, prose may not.
_MAX_CLOSE_REASON = 123


@attrs.frozen
class Session:
    """The Matrix identity behind one SFU participant."""

    room_id: RoomId
    user_id: UserId
    device_id: str

    def claims(self) -> dict[str, Any]:
        """The private claims carrying this session in a JWT (`sfu.tokens.issue`)."""
        return {
            Key.SESSION_CLAIM: {
                "room_id": self.room_id,
                "user_id": self.user_id,
                "device_id": self.device_id,
            }
        }


def session_of(claims: Mapping[str, Any]) -> Session | None:
    """The session a verified token's claims name, or None for a token without (or a bad) one."""
    raw = claims.get(Key.SESSION_CLAIM)
    if not isinstance(raw, dict):
        return None
    values = [raw.get(key) for key in ("room_id", "user_id", "device_id")]
    if not all(isinstance(v, str) and v for v in values):
        return None
    room_id, user_id, device_id = (str(v) for v in values)
    return Session(RoomId(room_id), UserId(user_id), device_id)


def still_allowed(facts: Facts) -> Literal[True] | Refusal:
    """True if a session with these (fresh) facts may go on, else why it must end.

    Only joining is re-decided. What the session may publish is fixed by its token: a grant
    that shrinks (a teacher turning pupils' cameras off) is enforced by the clients and by the
    next token, not by cutting the call.
    """
    decision = decide(facts)
    return decision if isinstance(decision, Refusal) else True


def close_reason(refusal: Refusal) -> str:
    """The WebSocket close reason for a session ended by `refusal`: its machine-readable code."""
    return refusal.value[:_MAX_CLOSE_REASON]


#: The directory's facts about (user ID, room ID): `AuthService.facts_for`.
FactsLookup = Callable[[UserId, RoomId], Awaitable[Facts]]


async def refusals(
    sessions: Iterable[Session], facts_for: FactsLookup
) -> dict[tuple[str, str], Refusal]:
    """Why each (room ID, user ID) of these sessions may no longer be in the call, if so.

    One lookup per pair, however many devices the user is in with. A lookup that fails keeps
    the session (fail open): ending every call in the school on a directory hiccup is worse
    than a removed pupil staying a few seconds more, and the token still ends within the hour.
    """
    keys = sorted({(session.room_id, session.user_id) for session in sessions})
    answers = await asyncio.gather(
        *(facts_for(user_id, room_id) for room_id, user_id in keys), return_exceptions=True
    )
    found: dict[tuple[str, str], Refusal] = {}
    for (room_id, user_id), answer in zip(keys, answers, strict=True):
        if not isinstance(answer, Facts):
            logger.warning("sfu: could not re-check %s in %s: %r", user_id, room_id, answer)
            continue
        verdict = still_allowed(answer)
        if isinstance(verdict, Refusal):
            found[(room_id, user_id)] = verdict
    return found
