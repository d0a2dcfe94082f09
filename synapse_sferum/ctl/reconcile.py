"""`sferumctl reconcile`: asks the server for a run and follows it to its end.

The server answers at once with the run's number (a school's first run takes minutes, longer than
a request should wait), and this polls `reconcile-status`, printing progress as it changes,
until that run has finished; its report is the command's answer.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from sferum_shared.adminapi import AdminApi, ReconcileStatus, parse_reconcile_status
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment

POLL_SECONDS = 1.0


def progress_line(status: ReconcileStatus) -> str:
    """One line on where the run asked for is, from its status."""
    progress = status.progress
    if status.finished or not progress:
        return f"run {status.run}: {status.state}"
    counts = ", ".join(
        f"{name} {progress.get(name, 0)}" for name in ("joined", "removed", "failures")
    )
    going = f"rooms {progress.get('rooms_done', 0)}/{progress.get('rooms_total', 0)}, {counts}"
    if progress.get("run") == status.run:
        return f"run {status.run}: {going}"
    return f"run {status.run}: {status.state}, after run {progress.get('run')} ({going})"


def reconcile(
    deployment: Deployment,
    *,
    wait: bool,
    say: Callable[[str], object],
    sleep: Callable[[float], object] = time.sleep,
) -> ReconcileStatus:
    """Starts (or joins) a run; with `wait`, follows it until it has finished."""
    status = parsed(parse_reconcile_status, call(deployment, lambda api: api.reconcile()))
    shown = ""
    while True:
        line = progress_line(status)
        if line != shown:
            say(line)
            shown = line
        if status.finished or not wait:
            return status
        sleep(POLL_SECONDS)
        request = functools.partial(AdminApi.reconcile_status, run=status.run)
        status = parsed(parse_reconcile_status, call(deployment, request))
