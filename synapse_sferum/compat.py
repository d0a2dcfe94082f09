"""The one place that reaches past Synapse's public module API.

`synapse.module_api.cached` is public, but since Synapse 1.138 the cache it builds reads
`server_name` and `clock` attributes from the instance, and ModuleApi exposes no clock. We build
one the way Synapse's own DirectServeJsonResource does when a module gives none. Covered by
tests/module/test_compat.py, which fails loudly if an upgrade changes this.
"""

from __future__ import annotations

from typing import Any, cast

from synapse.util.clock import Clock
from twisted.internet import reactor


def module_clock(server_name: str) -> Clock:
    return Clock(cast(Any, reactor), server_name=server_name)
