"""The support contacts of `/.well-known/matrix/support` (synapse_sferum/support.py): MSC1929's
document from the module's `support:` config, and the 404 of a server that set none."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.api.errors import Codes, SynapseError

from synapse_sferum.config import SupportConfig
from synapse_sferum.support import SupportResource, support_document

ADMIN = {"email_address": "admin@school.test", "role": "m.role.admin"}
PAGE = "https://school.test/help"


@pytest.mark.parametrize(
    ("config", "document"),
    [
        (SupportConfig(), None),
        (SupportConfig(email="admin@school.test"), {"contacts": [ADMIN]}),
        (SupportConfig(page=PAGE), {"support_page": PAGE}),
        (
            SupportConfig(email="admin@school.test", page=PAGE),
            {"contacts": [ADMIN], "support_page": PAGE},
        ),
    ],
)
def test_the_document_has_what_is_configured(
    config: SupportConfig, document: dict[str, Any] | None
) -> None:
    assert support_document(config) == document


async def test_the_resource_answers_the_document_or_matrix_not_found() -> None:
    request: Any = None  # the answer depends on nothing in the request
    document = {"support_page": PAGE}
    assert await SupportResource(document)._async_render_GET(request) == (200, document)
    with pytest.raises(SynapseError) as refused:
        await SupportResource(None)._async_render_GET(request)
    assert (refused.value.code, refused.value.errcode) == (404, Codes.NOT_FOUND)
