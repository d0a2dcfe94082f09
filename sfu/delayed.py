"""Delayed leave events delegated to the SFU (MSC4140, as lk-jwt-service takes them).

A MatrixRTC app announces itself in a call with a state event, and schedules its own "left the
call" event with a delay, restarting that delay every few seconds; when the phone dies, the
delay runs out and the others see it leave. In Element Call's "Matrix 2.0" mode the app hands
that job to the focus instead: `/get_token` carries the delay's ID and length, and the focus
keeps restarting it while the participant is connected and sends it the moment they go (which
the focus sees first). Element Call refuses to join a focus that cannot do this in that mode.

The delay travels inside the participant's JWT (a private claim, like the session), so the SFU
process that serves the connection is the one that keeps it. Requests go to the deployment's
own homeserver, never to an address the client names (`delay_cs_api_url` is checked to be
there and otherwise not followed). Building requests is kept apart from sending them.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from sferum_shared.vocabulary import Key

logger = logging.getLogger(__name__)

#: Synapse refuses longer delays than its `max_event_delay_duration` (24 h in our config).
MAX_DELAY_MS = 24 * 3600 * 1000
_MAX_DELAY_ID = 255


class DelegationError(ValueError):
    """The delegation fields of a token request, and what is wrong with them."""


@attrs.frozen
class DelayedLeave:
    """One participant's delayed leave event: its ID at the homeserver and its delay."""

    delay_id: str
    timeout_ms: int

    @property
    def restart_every(self) -> float:
        """Seconds between restarts: half the delay, so one lost request costs nothing."""
        return max(1.0, self.timeout_ms / 2000)

    def claims(self) -> dict[str, Any]:
        delegation = {"delay_id": self.delay_id, "timeout_ms": self.timeout_ms}
        return {Key.DELAYED_LEAVE_CLAIM: delegation}


def delayed_leave_of(claims: Mapping[str, Any]) -> DelayedLeave | None:
    raw = claims.get(Key.DELAYED_LEAVE_CLAIM)
    if not isinstance(raw, dict):
        return None
    delay_id, timeout = raw.get("delay_id"), raw.get("timeout_ms")
    if not isinstance(delay_id, str) or not delay_id or not isinstance(timeout, int):
        return None
    return DelayedLeave(delay_id, timeout)


def parse_delegation(body: Mapping[str, Any]) -> DelayedLeave | None:
    """The delegation a `/get_token` or `/sfu/get` body asks for; None if it asks for none.

    All three fields or none: `delay_id` (the homeserver's ID of the delayed event),
    `delay_timeout` (its delay in milliseconds) and `delay_cs_api_url` (the client-server API
    it was scheduled at).
    """
    fields = {key: body.get(key) for key in ("delay_id", "delay_timeout", "delay_cs_api_url")}
    if not any(fields.values()):
        return None
    missing = sorted(key for key, value in fields.items() if value in (None, ""))
    if missing:
        raise DelegationError(f"delegating a delayed event needs {', '.join(missing)} as well")
    delay_id, timeout, cs_api_url = fields.values()
    if not isinstance(delay_id, str) or len(delay_id) > _MAX_DELAY_ID or "/" in delay_id:
        raise DelegationError("`delay_id` must be a delayed event's ID (at most 255, no '/')")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 0 < timeout <= MAX_DELAY_MS
    ):
        raise DelegationError(f"`delay_timeout` must be milliseconds from 1 to {MAX_DELAY_MS}")
    if not isinstance(cs_api_url, str) or not cs_api_url.startswith(("https://", "http://")):
        raise DelegationError("`delay_cs_api_url` must be the homeserver's http(s) URL")
    return DelayedLeave(delay_id, timeout)


def action_url(homeserver_url: str, leave: DelayedLeave, action: str) -> str:
    """Where to `restart` or `send` a delayed event (no access token: the ID is the key)."""
    delay_id = urllib.parse.quote(leave.delay_id, safe="")
    return (
        f"{homeserver_url.rstrip('/')}/_matrix/client/unstable/org.matrix.msc4140/"
        f"delayed_events/{delay_id}/{action}"
    )


class DelayedLeaves:
    """Keeps delegated delayed leave events alive, and sends them when their participant goes."""

    def __init__(self, homeserver_url: str) -> None:
        self._homeserver_url = homeserver_url
        self._http: aiohttp.ClientSession | None = None

    async def keep(self, leave: DelayedLeave) -> None:
        """Restart the delay until cancelled (the participant left: then :meth:`send`)."""
        while True:
            await asyncio.sleep(leave.restart_every)
            if await self._post(leave, "restart") == 404:
                return  # sent already, or cancelled by the app: nothing left to keep

    async def send(self, leave: DelayedLeave) -> None:
        """The participant is gone: their leave event goes out now."""
        if await self._post(leave, "send") == 200:
            logger.info("sfu: delayed leave %s sent", leave.delay_id)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, leave: DelayedLeave, action: str) -> int | None:
        """The homeserver's status, or None when it could not be reached (tried next time)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        url = action_url(self._homeserver_url, leave, action)
        try:
            async with self._http.post(url, json={}) as response:
                if response.status != 200:
                    logger.info(
                        "sfu: delayed leave %s: %s gave %s",
                        leave.delay_id,
                        action,
                        response.status,
                    )
                return response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            logger.warning("sfu: delayed leave %s: %s failed: %s", leave.delay_id, action, e)
            return None
