"""Which outcomes of a request a client sends again (sferum_shared.http.retryable)."""

from __future__ import annotations

import pytest

from sferum_shared.http import Response, Unreachable, retryable


@pytest.mark.parametrize(
    ("answer", "again"),
    [
        (Unreachable("PUT /send: connection refused"), True),
        (Unreachable("PUT /send: connection reset by peer"), True),
        (Unreachable("PUT /send: no answer in time", timed_out=True), True),
        (Response(500, b'{"errcode": "M_UNKNOWN"}'), True),
        (Response(502, b"<html>Bad Gateway</html>"), True),  # nginx: the worker is down
        (Response(503, b""), True),
        (Response(504, b"<html>Gateway Time-out</html>"), True),
        (Response(429, b'{"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 500}'), True),
        (Response(200, b'{"event_id": "$e"}'), False),  # done: nothing to send again
        (Response(400, b'{"errcode": "M_BAD_JSON"}'), False),
        (Response(401, b'{"errcode": "M_UNKNOWN_TOKEN"}'), False),
        (Response(403, b'{"errcode": "M_FORBIDDEN"}'), False),
        (Response(404, b'{"errcode": "M_NOT_FOUND"}'), False),
        (Response(413, b'{"errcode": "M_TOO_LARGE"}'), False),
    ],
)
def test_retryable(answer: Response | Unreachable, again: bool) -> None:
    assert retryable(answer) is again
