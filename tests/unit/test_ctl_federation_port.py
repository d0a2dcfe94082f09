"""nginx's TLS federation port of a worker deployment serves what main's federation listener
serves without workers, and nothing of the client or admin APIs (ctl/workers.py)."""

from __future__ import annotations

import re

import pytest

from synapse_sferum.ctl.workers import FEDERATION_PORT_REST, ROUTES, federation_port_routes


def _on_federation_port(path: str) -> str | None:
    """Where the federation port sends `path`: its first matching route, then main for the
    rest of its paths; None for nginx's 404."""
    routed = next(
        (up for pattern, up in federation_port_routes() if re.search(pattern, path)), None
    )
    if routed is None and re.search(FEDERATION_PORT_REST, path):
        return "main"
    return routed


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/_matrix/federation/v1/send/123", "federation"),
        ("/_matrix/federation/v2/invite/!a:s/$e", "federation"),
        ("/_matrix/federation/v1/make_join/!a:s/@u:s", "federation"),
        ("/_matrix/key/v2/query", "federation"),
        ("/_matrix/key/v2/server", "main"),
        ("/_matrix/federation/v1/openid/userinfo", "main"),
        ("/_matrix/federation/v1/media/download/abc", "media"),
        ("/_matrix/media/v3/download/s/abc", "media"),
        ("/_synapse/client/sferum/join", "module"),
        ("/.well-known/matrix/server", "client"),
        # main's federation listener has no client resource: no client or admin API here
        ("/_matrix/client/versions", None),
        ("/_matrix/client/v3/login", None),
        ("/_matrix/client/v3/sync", None),
        ("/_matrix/client/v1/media/download/s/abc", None),
        ("/_synapse/admin/v1/register", None),
        ("/_synapse/admin/v1/media/s/abc", None),
        ("/_synapse/client/password_reset/email/submit_token", None),
        ("/.well-knownXmatrix/server", None),
    ],
)
def test_federation_port_serves_only_federation_paths(path: str, upstream: str | None) -> None:
    assert _on_federation_port(path) == upstream


def test_federation_port_routes_keep_the_client_ports_order() -> None:
    routes = federation_port_routes()
    assert [r for r in ROUTES if r in routes] == list(routes)
