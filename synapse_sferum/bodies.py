"""Request bodies of the module's own HTTP endpoints (admin API, phone delegate, `/join`)."""

from __future__ import annotations

import json
from typing import Any

from synapse.module_api.errors import Codes, SynapseError


def json_object(request: Any) -> dict[str, Any]:
    """The request's JSON object; 400 `M_NOT_JSON` if it is not JSON, `M_BAD_JSON` if it is
    JSON but no object (an empty body is an empty object)."""
    try:
        body = json.loads(request.content.read() or b"{}")
    except ValueError as e:
        raise SynapseError(400, f"Body is not JSON: {e}", Codes.NOT_JSON) from e
    if not isinstance(body, dict):
        raise SynapseError(400, "Body must be a JSON object", Codes.BAD_JSON)
    return body
