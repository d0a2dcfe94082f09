"""HTTP to the deployment's own servers, which are local: never through a proxy from the env."""

from __future__ import annotations

import urllib.request
from http.client import HTTPResponse

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def open_local(request: urllib.request.Request | str, timeout: float) -> HTTPResponse:
    """urlopen without proxies; raises HTTPError for non-2xx and URLError if unreachable."""
    response: HTTPResponse = _OPENER.open(request, timeout=timeout)
    return response
