"""sferumctl's transport for the platform's admin API (`sferum_shared.adminapi`), and what its
answers mean to the person at the terminal.

Requests are built and answers read by the shared, pure protocol; `call` is the only part here
that does I/O, and `parsed` turns the protocol's errors into the CLI's messages and exit codes.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TypeVar

from sferum_shared.adminapi import PREFIX, AdminApi, Problem, Refused, Unexpected
from sferum_shared.http import Request, Response
from synapse_sferum.ctl.deployment import SFERUM_MODULE, Deployment, local_base_url
from synapse_sferum.ctl.errors import EXIT_UNREACHABLE, CtlError
from synapse_sferum.ctl.http import open_local

TIMEOUT_SECONDS = 300.0  # a whole district's roster is imported in one transaction

T = TypeVar("T")


class Rejected(CtlError):
    """The server refused the request as invalid (400) or naming something unknown (404)."""

    def __init__(self, errcode: str, error: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(f"{error} ({errcode})", details=[str(p) for p in problems])
        self.errcode = errcode
        self.problems = tuple(problems)


def parsed(parse: Callable[[Response], T], response: Response) -> T:
    """What `parse` reads from the answer; a CtlError that says what to do otherwise."""
    try:
        return parse(response)
    except Unexpected as e:
        raise CtlError(str(e), exit_code=EXIT_UNREACHABLE) from None
    except Refused as e:
        raise _explained(e) from None


def _explained(refused: Refused) -> CtlError:
    if refused.errcode == "M_UNRECOGNIZED":
        message = f"the server does not serve {PREFIX}: is {SFERUM_MODULE} in its modules?"
    elif refused.status in (400, 404) and refused.errcode:
        return Rejected(refused.errcode, refused.error, refused.problems)
    elif refused.status in (401, 403):
        message = (
            f"the server refused the admin API secret ({refused}); sferumctl sends "
            "admin_api_secret from the deployment's secrets.yaml, which must match the "
            "module's config"
        )
    elif refused.status >= 500:
        message = f"the server failed ({refused}); see its log"
    else:
        message = f"unexpected answer ({refused})"
    return CtlError(message, exit_code=EXIT_UNREACHABLE)


def call(deployment: Deployment, build: Callable[[AdminApi], Request]) -> Response:
    """Sends the request that `build` makes for this deployment's server and secret."""
    base_url = local_base_url(deployment, deployment.load_config())
    request = build(AdminApi(f"{base_url}{PREFIX}", deployment.admin_api_secret()))
    http_request = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method=request.method
    )
    try:
        with open_local(http_request, timeout=TIMEOUT_SECONDS) as answer:
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, e.read())
    except OSError as e:  # URLError (refused, unknown host), timeouts
        reason = getattr(e, "reason", e)
        raise CtlError(
            f"cannot reach the server at {base_url}: {reason}",
            details=[f"is the server running? try: sferumctl start {deployment.root}"],
            exit_code=EXIT_UNREACHABLE,
        ) from None
