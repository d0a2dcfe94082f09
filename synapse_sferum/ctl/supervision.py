"""Keeping a deployment's services up: whether to restart one that exited, and when.

Pure decisions over plain numbers, so tables of cases test them; the supervisor process
(`supervisor.py`) is the shell that spawns, reaps and sleeps, and `sferumctl status` reads the
state it writes here.

The policy is systemd's `Restart=on-failure`, the one the units of `sferumctl systemd` use, so a
deployment behaves the same under either: an exit with code 0 or by SIGTERM, SIGINT, SIGHUP or
SIGPIPE was asked for (an admin stopped that process) and is not undone; any other exit (a crash,
SIGKILL from the OOM killer or an admin's -9) is restarted after a back-off that doubles from
`first_delay` up to `max_delay`. A service that stayed up `reset_after` seconds starts again
from `first_delay`. It never gives up: the usual causes of a crash loop (PostgreSQL or the disk
down) pass by themselves, and one attempt a minute costs nothing meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import attrs

# Exits by these signals are deliberate stops, as systemd counts them for Restart=on-failure.
CLEAN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE})


@attrs.frozen
class RestartPolicy:
    first_delay: float = 1.0
    max_delay: float = 60.0
    reset_after: float = 120.0


DEFAULT_POLICY = RestartPolicy()


def is_failure(returncode: int) -> bool:
    """Whether an exit (a Popen returncode: negative for a signal) was a failure, not a stop."""
    if returncode < 0:
        return -returncode not in CLEAN_SIGNALS
    return returncode != 0


def describe_exit(returncode: int) -> str:
    """'exited with code 3' or 'was killed by SIGKILL', from a Popen returncode."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


@attrs.frozen
class AfterExit:
    restart: bool
    delay: float  # seconds until the next start; 0 if not restarting
    failures: int  # failures in a row, this one included; 0 after a deliberate stop


def after_exit(
    failed: bool, uptime: float, failures: int, policy: RestartPolicy = DEFAULT_POLICY
) -> AfterExit:
    """What to do about a service that exited after `uptime` seconds, `failures` earlier
    failures in a row having been counted."""
    if not failed:
        return AfterExit(restart=False, delay=0.0, failures=0)
    count = 1 if uptime >= policy.reset_after else failures + 1
    return AfterExit(restart=True, delay=backoff_delay(count, policy), failures=count)


def backoff_delay(failures: int, policy: RestartPolicy = DEFAULT_POLICY) -> float:
    """The wait before the restart that follows the `failures`-th failure in a row (1, 2, …)."""
    return float(min(policy.first_delay * 2 ** max(failures - 1, 0), policy.max_delay))


# What a service is doing, as the supervisor last wrote it.
RUNNING, WAITING, STOPPED = "running", "waiting", "stopped"


@attrs.frozen
class ServiceState:
    state: str = attrs.field(validator=attrs.validators.in_((RUNNING, WAITING, STOPPED)))
    pid: int | None = None
    restarts: int = 0  # starts after the first one
    exits: int = 0  # exits seen, deliberate ones included
    last_exit: str | None = None  # describe_exit(), or why it could not be started
    last_exit_at: str | None = None  # ISO 8601, local time
    restart_at: str | None = None  # ISO 8601, local time; only while WAITING


def write_states(path: Path, states: dict[str, ServiceState]) -> None:
    """Replaces the state file atomically: a reader sees the old one or the new one, whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(
        json.dumps({name: attrs.asdict(s) for name, s in states.items()}, indent=1) + "\n"
    )
    os.replace(temporary, path)


def read_states(path: Path) -> dict[str, ServiceState]:
    """The state file's services; none if there is no readable state file."""
    try:
        raw: Any = json.loads(path.read_text())
        return {str(name): ServiceState(**fields) for name, fields in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
