"""The answer of every rule: allowed, or refused with a reason a client can act on.

The glue turns a refusal into Synapse's `(Codes.FORBIDDEN, {Key.REASON: reason})`, so every refusal
reaches the user as `M_FORBIDDEN` with a stable, namespaced reason (docs/rooms-and-rules.md), never
a 500."""

from __future__ import annotations

import attrs

from sferum_shared.vocabulary import Reason


@attrs.frozen
class Decision:
    """`reason` is empty exactly when `allowed` is true."""

    allowed: bool
    reason: str = ""


ALLOW = Decision(allowed=True)


def refuse(reason: Reason) -> Decision:
    # Store the plain string: a Decision is data that crosses into Synapse's JSON error bodies.
    return Decision(allowed=False, reason=reason.value)
