"""HTTP requests and responses as plain values: protocols build and parse these, transports
(urllib in sferumctl, aiohttp in the bridge and the SFU) send them. As matrix-nio's `api.py`
and `responses.py` keep the Matrix protocol apart from any transport."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)  # names in lower case
    url: str = ""  # what was asked, for messages

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (an HTML error page of a proxy)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def json_object(self) -> dict[str, Any]:
        """The body's JSON object, or an empty one when it is anything else."""
        body = self.json()
        return body if isinstance(body, dict) else {}


class Unreachable(Exception):
    """The request got no HTTP answer: refused, unknown host, timed out."""

    def __init__(self, message: str, *, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def retryable(answer: Response | Unreachable) -> bool:
    """Whether a client should send the same request again, later (a Matrix client with the same
    transaction ID, so that one which did arrive is not done twice): no answer at all (refused,
    reset, timed out), a failure of the server or of a proxy in front of it (5xx), or a rate
    limit (429). Any other answer is final: a 4xx refuses the request itself, and would again."""
    if isinstance(answer, Unreachable):
        return True
    return answer.status == 429 or answer.status >= 500


def json_request(method: str, url: str, body: Any, headers: Mapping[str, str]) -> Request:
    return Request(
        method,
        url,
        {**headers, "Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
