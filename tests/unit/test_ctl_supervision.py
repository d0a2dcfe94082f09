"""The supervisor's decisions: which exits are failures, the back-off and its reset; its state."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from synapse_sferum.ctl.supervision import (
    RUNNING,
    WAITING,
    AfterExit,
    RestartPolicy,
    ServiceState,
    after_exit,
    backoff_delay,
    describe_exit,
    is_failure,
    read_states,
    write_states,
)

POLICY = RestartPolicy(first_delay=1, max_delay=60, reset_after=120)


@pytest.mark.parametrize(
    ("returncode", "failure", "described"),
    [
        (0, False, "exited with code 0"),
        (1, True, "exited with code 1"),
        (3, True, "exited with code 3"),
        (-signal.SIGKILL, True, "was killed by SIGKILL"),
        (-signal.SIGSEGV, True, "was killed by SIGSEGV"),
        (-signal.SIGABRT, True, "was killed by SIGABRT"),
        (-signal.SIGTERM, False, "was killed by SIGTERM"),
        (-signal.SIGINT, False, "was killed by SIGINT"),
        (-signal.SIGHUP, False, "was killed by SIGHUP"),
        (-signal.SIGPIPE, False, "was killed by SIGPIPE"),
        (-99, True, "was killed by signal 99"),
    ],
)
def test_exits(returncode: int, failure: bool, described: str) -> None:
    assert is_failure(returncode) is failure
    assert describe_exit(returncode) == described


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 60), (8, 60), (50, 60)],
)
def test_backoff_doubles_up_to_its_cap(failures: int, delay: float) -> None:
    assert backoff_delay(failures, POLICY) == delay


@pytest.mark.parametrize(
    ("failed", "uptime", "failures", "expected"),
    [
        # A first crash, soon after the start: restart after the first delay.
        (True, 3, 0, AfterExit(restart=True, delay=1, failures=1)),
        # Crashing again and again while starting: the delay doubles.
        (True, 0.5, 1, AfterExit(restart=True, delay=2, failures=2)),
        (True, 0.5, 4, AfterExit(restart=True, delay=16, failures=5)),
        (True, 0.5, 9, AfterExit(restart=True, delay=60, failures=10)),
        # Up a while (reset_after) before it crashed: the back-off starts afresh.
        (True, 120, 9, AfterExit(restart=True, delay=1, failures=1)),
        (True, 119.9, 9, AfterExit(restart=True, delay=60, failures=10)),
        # A deliberate stop is not undone, and clears the count.
        (False, 3, 0, AfterExit(restart=False, delay=0, failures=0)),
        (False, 0.5, 6, AfterExit(restart=False, delay=0, failures=0)),
    ],
)
def test_after_exit(failed: bool, uptime: float, failures: int, expected: AfterExit) -> None:
    assert after_exit(failed, uptime, failures, POLICY) == expected


def test_states_round_trip_and_a_broken_file_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    states = {
        "synapse": ServiceState(state=RUNNING, pid=41, restarts=1, exits=1,
                                last_exit="was killed by SIGKILL",
                                last_exit_at="2026-12-01T10:00:00+00:00"),
        "sfu": ServiceState(state=WAITING, restarts=2, exits=3, last_exit="exited with code 1",
                            restart_at="2026-12-01T10:00:04+00:00"),
    }  # fmt: skip
    write_states(path, states)
    assert read_states(path) == states
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    for text in ("", "[1, 2]", '{"synapse": {"state": "dancing"}}', '{"x": {"nope": 1}}'):
        path.write_text(text)
        assert read_states(path) == {}
    assert read_states(tmp_path / "absent.json") == {}
