"""The supervisor: `python -m synapse_sferum.ctl.supervisor SPEC`, started by `sferumctl start`.

It spawns the services SPEC lists in order (or adopts one already running, by its PID file; one
that `requires` others once they answer their health checks), restarts one that fails as
`supervision.after_exit` decides, writes their state for `sferumctl status`,
and on SIGTERM or SIGINT stops them all in reverse start order and exits. SIGUSR1 (from
`sferumctl start`) starts at once every service that waits for its restart or was stopped.
Its output is its log: one line per start, exit and restart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import attrs

from sferum_shared import SYSTEM_CLOCK, Clock
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.services import (
    Service,
    read_spec,
    signals_caught,
    spawn,
    stop_each,
)
from synapse_sferum.ctl.supervision import (
    DEFAULT_POLICY,
    RUNNING,
    STOPPED,
    WAITING,
    RestartPolicy,
    ServiceState,
    after_exit,
    describe_exit,
    is_failure,
    write_states,
)

POLL_SECONDS = 0.2


class _Child:
    """One service as the supervisor tracks it (the shell's mutable bookkeeping)."""

    def __init__(self, service: Service):
        self.service = service
        self.process: subprocess.Popen[bytes] | None = None  # None if adopted, or not running
        self.pid: int | None = None
        self.started_at = 0.0  # time.monotonic()
        self.failures = 0
        self.starts = 0  # spawned or adopted
        self.restart_at: float | None = None  # time.monotonic(); only while waiting
        self.held = False  # to be started once the services it requires answer
        self.state = ServiceState(state=STOPPED)


class Supervisor:
    """The loop: polls its children every POLL_SECONDS (no SIGCHLD handler to race with)."""

    def __init__(
        self,
        services: list[Service],
        state_path: Path,
        *,
        policy: RestartPolicy = DEFAULT_POLICY,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.children = [_Child(s) for s in services]
        self.by_name = {c.service.name: c for c in self.children}
        self.state_path = state_path
        self.policy = policy
        self.clock = clock

    def say(self, line: str) -> None:
        stamp = self.clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {line}", flush=True)

    def run(self) -> None:
        with signals_caught((signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)) as received:
            for child in self.children:
                pid = child.service.running_pid()
                if pid is None:
                    child.held = True  # the first tick starts it, once it may
                else:
                    self.say(f"{child.service.name}: adopted (pid {pid})")
                    child.pid, child.started_at, child.starts = pid, time.monotonic(), 1
                    child.state = ServiceState(state=RUNNING, pid=pid)
            self._write()
            while not {signal.SIGTERM, signal.SIGINT} & set(received):
                wake = signal.SIGUSR1 in received
                received.clear()
                changed = [self._tick(child, wake) for child in self.children]  # each ticks
                if any(changed):
                    self._write()
                time.sleep(POLL_SECONDS)
            stopping = next(signum for signum in received if signum != signal.SIGUSR1)
            self.say(f"stopping ({signal.Signals(stopping).name})")
            stop_each([c.service for c in self.children], say=self.say)
            for child in self.children:  # reap what stop_each saw exit
                if child.process is not None:
                    child.process.poll()
        self.state_path.unlink(missing_ok=True)
        self.say("stopped")

    def _tick(self, child: _Child, wake: bool) -> bool:
        """Notices an exit, or starts a service whose time has come; True if its state changed."""
        now = time.monotonic()
        if child.pid is not None:
            if child.process is not None:
                returncode = child.process.poll()
                if returncode is None:
                    return False
                self._exited(child, is_failure(returncode), describe_exit(returncode), now)
            elif child.service.running_pid() != child.pid:  # adopted: not our child to wait for
                self._exited(child, True, "exited, how is unknown (adopted, not our child)", now)
            else:
                return False
            return True
        due = child.restart_at is not None and now >= child.restart_at
        if not (due or wake or child.held):
            return False
        if not all(self.by_name[name].service.healthy() for name in child.service.requires):
            child.held, child.restart_at = True, None
            if child.state.state == WAITING and child.state.restart_at is None:
                return False  # said so already
            self.say(f"{child.service.name}: waits for {', '.join(child.service.requires)}")
            child.state = attrs.evolve(child.state, state=WAITING, restart_at=None)
            return True
        child.held = False
        self._start(child)
        return True

    def _exited(self, child: _Child, failed: bool, what: str, now: float) -> None:
        """Records an exit and decides on the restart. An adopted process's status is unknown:
        it counts as a failure, the safe side."""
        name, pid, uptime = child.service.name, child.pid, now - child.started_at
        decision = after_exit(failed, uptime, child.failures, self.policy)
        child.pid, child.process, child.failures = None, None, decision.failures
        child.service.pid_path.unlink(missing_ok=True)
        if decision.restart:
            child.restart_at = time.monotonic() + decision.delay
            self.say(
                f"{name} (pid {pid}) {what} after {uptime:.0f} s; restart in {decision.delay:g} s"
            )
        else:
            child.restart_at = None
            self.say(f"{name} (pid {pid}) {what}: stopped on purpose, not restarted")
        self._record_exit(child, what, decision.delay if decision.restart else None)

    def _record_exit(self, child: _Child, what: str, delay: float | None) -> None:
        now = self.clock.now().astimezone()
        child.state = attrs.evolve(
            child.state,
            state=STOPPED if delay is None else WAITING,
            pid=None,
            exits=child.state.exits + 1,
            last_exit=what,
            last_exit_at=now.isoformat(timespec="seconds"),
            restart_at=None
            if delay is None
            else (now + timedelta(seconds=delay)).isoformat(timespec="seconds"),
        )

    def _start(self, child: _Child) -> None:
        child.starts += 1
        child.restart_at = None
        child.state = attrs.evolve(child.state, restarts=child.starts - 1)
        try:
            child.process = spawn(child.service)
        except CtlError as e:  # argv[0] vanished since `start` checked it: a failure like a crash
            self.say(e.message)
            decision = after_exit(True, 0.0, child.failures, self.policy)
            child.failures = decision.failures
            child.restart_at = time.monotonic() + decision.delay
            self._record_exit(child, e.message.split(": ", 1)[1], decision.delay)
            return
        child.pid, child.started_at = child.process.pid, time.monotonic()
        child.state = attrs.evolve(child.state, state=RUNNING, pid=child.pid, restart_at=None)
        restart = f", restart {child.starts - 1}" if child.starts > 1 else ""
        self.say(f"{child.service.name}: started (pid {child.pid}{restart})")

    def _write(self) -> None:
        write_states(self.state_path, {c.service.name: c.state for c in self.children})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m synapse_sferum.ctl.supervisor SPEC", file=sys.stderr)
        return 2
    try:
        services, state_path = read_spec(Path(argv[0]))
    except CtlError as e:
        print(e.message, file=sys.stderr)
        return 1
    Supervisor(services, state_path).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
