"""The school's support contacts at `/.well-known/matrix/support` (MSC1929, Matrix 1.10).

Apps show these where a person looks for help (Element's "contact your server admin"), so a
parent who cannot sign in learns whom to write to without knowing the school's staff. The
document comes from the module's `support:` config; a server that set neither key answers 404,
as the spec says for a server with nothing to publish.

Synapse serves only `/.well-known/matrix/client` and `/server`, and a module can only add a
resource by replacing the whole `/.well-known/matrix` node (`compat.synapse_well_known` says
why), so that node is the module's: Synapse's own two resources, unchanged, and `support`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synapse.module_api import DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError
from twisted.web.resource import Resource

from synapse_sferum.compat import synapse_well_known
from synapse_sferum.config import SupportConfig

WELL_KNOWN_MATRIX = "/.well-known/matrix"
#: MSC1929's role for whoever runs the server: the school's administrator.
ADMIN_ROLE = "m.role.admin"


def support_document(config: SupportConfig) -> dict[str, Any] | None:
    """The MSC1929 document, with only what is configured; None when nothing is."""
    document: dict[str, Any] = {}
    if config.email is not None:
        document["contacts"] = [{"email_address": config.email, "role": ADMIN_ROLE}]
    if config.page is not None:
        document["support_page"] = config.page
    return document or None


class SupportResource(DirectServeJsonResource):
    """`/.well-known/matrix/support`: JSON with Synapse's CORS headers (`Access-Control-Allow-
    Origin: *`), as its own well-known files, since web apps read it from another origin."""

    isLeaf = True

    def __init__(self, document: dict[str, Any] | None) -> None:
        super().__init__()
        self._document = document

    async def _async_render_GET(self, request: Any) -> tuple[int, dict[str, Any]]:
        if self._document is None:
            raise SynapseError(404, "No support contacts on this server", Codes.NOT_FOUND)
        return 200, self._document


class SupportContacts:
    def __init__(self, api: ModuleApi, config: SupportConfig) -> None:
        self._api = api
        self._config = config

    def register(self) -> None:
        """Always, even with nothing configured: then `support` answers Matrix's JSON 404."""
        support = SupportResource(support_document(self._config))
        children = {**synapse_well_known(self._api), b"support": support}
        self._api.register_web_resource(WELL_KNOWN_MATRIX, _node(children))


def _node(children: Mapping[bytes, Resource]) -> Resource:
    """A plain node with these children, as Synapse's own `matrix` node is (a name it does not
    have gets twisted's 404 page, as before)."""
    node = Resource()  # type: ignore[no-untyped-call]  # twisted's __init__ is not annotated
    node.children.update(children)
    return node
