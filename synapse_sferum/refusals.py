"""Turning rule decisions into what Synapse's callbacks expect, and failing closed.

Every refusal is `M_FORBIDDEN` with the reason under Key.REASON. A rule that raises is logged
and refuses: an unexpected exception never lets an action through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from synapse.module_api import NOT_SPAM
from synapse.module_api.errors import Codes, SynapseError

from sferum_shared.vocabulary import Key, Reason
from synapse_sferum import metrics
from synapse_sferum.policy import Decision

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


SpamCheckResult = Literal["NOT_SPAM"] | Codes | tuple[Codes, dict[str, Any]]


def spam_check_result(decision: Decision) -> SpamCheckResult:
    """NOT_SPAM, or (M_FORBIDDEN, {reason}) for Synapse's spam-checker callbacks."""
    if decision.allowed:
        return NOT_SPAM
    metrics.record_refusal(decision.reason)
    return (Codes.FORBIDDEN, {Key.REASON: decision.reason})


def forbidden(decision: Decision, message: str) -> SynapseError:
    """The error to raise where a callback may raise (check_event_allowed, on_create_room)."""
    metrics.record_refusal(decision.reason)
    return SynapseError(403, message, Codes.FORBIDDEN, {Key.REASON: decision.reason})


def fail_closed(
    refusal: R,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Wraps a callback so that an unexpected exception is logged and answered with `refusal`.

    A SynapseError is a deliberate answer (a refusal with its own message) and passes through.
    """

    def wrap(callback: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(callback)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await callback(*args, **kwargs)
            except SynapseError:
                raise
            except Exception:
                logger.exception("synapse_sferum: %s failed; refusing", callback.__name__)
                metrics.record_refusal(Reason.INTERNAL_ERROR)
                return refusal

        return guarded

    return wrap


SPAM_REFUSAL: SpamCheckResult = (Codes.FORBIDDEN, {Key.REASON: Reason.INTERNAL_ERROR})
