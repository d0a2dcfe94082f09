"""`sferumctl diary sync`: asks the running diary bridge to sync now."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from synapse_sferum.ctl.deployment import Deployment, read_yaml_mapping
from synapse_sferum.ctl.errors import EXIT_UNREACHABLE, CtlError
from synapse_sferum.ctl.http import open_local

TIMEOUT_SECONDS = 600.0  # a first sync of a whole school's gradebook


def sync_now(deployment: Deployment) -> dict[str, Any]:
    config = read_yaml_mapping(deployment.bridge_config)
    if config is None:
        raise CtlError(
            f"{deployment.root} has no diary bridge",
            details=[f"give it sources: sferumctl init {deployment.root} --diary-source ..."],
        )
    port = (config.get("http") or {}).get("port")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sync",
        data=b"{}",
        headers={"Authorization": f"Bearer {config.get('control_secret', '')}"},
        method="POST",
    )
    try:
        with open_local(request, timeout=TIMEOUT_SECONDS) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        with e:
            detail = e.read()[:300].decode(errors="replace")
        raise CtlError(f"the diary bridge answered {e.code}: {detail}") from None
    except OSError as e:
        raise CtlError(
            f"cannot reach the diary bridge on port {port}: {getattr(e, 'reason', e)}",
            details=[f"is it running? try: sferumctl start {deployment.root}"],
            exit_code=EXIT_UNREACHABLE,
        ) from None
    if not isinstance(body, dict):
        raise CtlError(f"unexpected answer from the diary bridge: {body!r}")
    return body
