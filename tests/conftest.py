"""How the tests share the machine when scripts/test runs them on several pytest-xdist workers.

Which tests share a worker: xdist's own grouping (`xdist_group` marks) renames the tests' node
IDs, which pytest 9.2 no longer lets it do, so `--dist loadgroup` gets the groups from here.
Which tests run alone: those marked `alone`, whose media checks a busy machine would fail.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling

INTEGRATION = "tests/integration/"
#: Integration modules whose tests use the session-scoped `demo_school`: the worker that runs
#: them builds it once for all (tests/integration/conftest.py checks that the list is whole).
DEMO_SCHOOL_MODULES = {
    "test_attacks",
    "test_documents",
    "test_polls",
    "test_school_space",
    "test_stickers",
}
#: Calls that encode and decode real-time video and audio (aiortc, LiveKit's Rust SDK, Chromium)
#: and wait for what arrives: one worker runs them one after another, so two of them never
#: compete for the machine's two cores. The order is the one they run in: every test not
#: marked `alone` first, then those marked `alone` one after another (the lesson module's last,
#: so its deployment is set up before the lock is taken), so that the worker takes the
#: exclusive lock once, not once per test.
_MEDIA_ORDER = (
    "test_sfu_livekit_media",
    "test_sfu_media",
    "test_sfu_page",
    "test_sfu_lesson",
    "alone:test_sfu_lesson",
    "alone:test_sfu_livekit_browser",
    "alone:test_sfu_page",
    "alone:test_sfu_media",
)
MEDIA_MODULES = {place.removeprefix("alone:") for place in _MEDIA_ORDER}


def work_unit(nodeid: str) -> str:
    """The tests one worker runs together, in order: all of an integration module's, which share
    its module-scoped deployment, or of the group above it is in; any other test alone."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith(INTEGRATION):
        return nodeid
    module = PurePosixPath(path).stem
    if module in DEMO_SCHOOL_MODULES:
        return "demo_school"
    if module in MEDIA_MODULES:
        return "media"
    return module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnits(config, log)


def _alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Orders the media unit as `_MEDIA_ORDER` says; the rest keeps pytest's order. Every
    worker collects the same order, which xdist's scheduler keeps within a unit."""
    media = [item for item in items if work_unit(item.nodeid) == "media"]
    if not media:
        return

    def place(item: pytest.Item) -> int:
        module = item.path.stem
        return _MEDIA_ORDER.index(f"alone:{module}" if _alone(item) else module)

    ordered = iter(sorted(media, key=place))  # stable: a module's tests keep their order
    items[:] = [next(ordered) if work_unit(item.nodeid) == "media" else item for item in items]


#: The lock, while this worker's tests marked `alone` follow one another.
_kept: list[IO[str]] = []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outside pytest-timeout's clock
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """On an xdist worker, a test marked `alone` runs, from its fixtures' set-up to their
    tear-down, while no other worker runs one: a shared lock for every test, an exclusive one
    for these. Real-time video (Chromium's encoder, 40 aiortc viewers) adapts to a busy CPU
    by sending less, which is right for a call and wrong for a check of what arrives."""
    basetemp = item.config.option.basetemp if hasattr(item.config, "workerinput") else None
    if not basetemp:
        yield
        return
    alone = _alone(item)
    if _kept:  # the test before was alone too, and kept the exclusive lock for this one
        lock = _kept.pop()
    else:
        # The workers' base folders are popen-gw0, popen-gw1, ... in the run's own folder.
        run = Path(basetemp).parent
        lock = (run / "alone.lock").open("a")
        with (run / "alone.turn").open("a") as turn:
            asked = time.monotonic()
            # A turnstile first, as in a fair readers-writer lock: flock(2) lets shared
            # holders come and go past a waiting exclusive one, so a test marked `alone`
            # waited for a gap between the other workers' tests. Holding the turnstile while
            # it waits, it gets the lock as soon as the tests running now end, and no new one
            # starts before it.
            fcntl.flock(turn, fcntl.LOCK_EX)
            if not alone:
                fcntl.flock(turn, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            _waited[0] += time.monotonic() - asked
    yield
    if alone and _alone(nextitem):
        _kept.append(lock)
    else:
        lock.close()


WAITED = "sferum_waited_for_alone_s"
_waited = [0.0]  # this worker's seconds on the lock


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker reports how long its tests waited on the lock above (idle time of the run)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput[WAITED] = _waited[0]


def pytest_testnodedown(node: Any, error: object) -> None:
    waited = node.config.stash.setdefault(_WAITS, {})
    waited[node.gateway.id] = getattr(node, "workeroutput", {}).get(WAITED, 0.0)


_WAITS = pytest.StashKey[dict[str, float]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    waits = config.stash.get(_WAITS, {})
    if waits:
        each = ", ".join(f"{worker} {seconds:.0f} s" for worker, seconds in sorted(waits.items()))
        terminalreporter.write_line(f"waiting for tests marked alone, or while they ran: {each}")
