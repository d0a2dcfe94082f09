"""The client processes of the SFU benches, spoken to over their stdio, and the marks.

A client process (`bench/sfu_load/client.py`, `bench/sfu_load/lesson.py`) prints ``ready``
once connected, and for each ``mark`` read on stdin ``marked {json}`` with its running totals;
``stop`` or the end of stdin ends it. A mark is taken in every client at once, and the CPU
counters of the server and the clients are read at that moment, so every figure of a window
covers the same seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import attrs

from bench.sfu_load.servers import (
    REPO,
    ServerFailed,
    core_busy_seconds,
    ensure_janus,
    log_tail,
    process_cpu_seconds,
    stop_process,
)

READY_SECONDS = 60.0


class BenchFailed(RuntimeError):
    pass


@attrs.define(eq=False)
class Client:
    """One client process, spoken to over its stdio."""

    role: str
    process: asyncio.subprocess.Process
    log: Path

    async def expect(self, prefix: str, timeout: float) -> str:
        """The rest of the next stdout line starting with `prefix`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while line := (await self.process.stdout.readline()).decode():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
        raise BenchFailed(f"the {self.role} ended early; its log:\n{log_tail(self.log, 40)}")

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())

    async def stop(self) -> None:
        with contextlib.suppress(ConnectionError):
            self.send("stop")
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            await stop_process(self.process)


async def spawn_client(
    role: str, module: str, args: Sequence[str], folder: Path, prefix: list[str]
) -> Client:
    """`python -m module *args` as the client `role`, its stderr in `folder`/`role`.log."""
    log = folder / f"{role}.log"
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            module,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it by PID
        )
    return Client(role, process, log)


@attrs.frozen
class Mark:
    time: float
    server_cpu: float
    core0: float
    clients_cpu: float
    totals: list[dict[str, Any]]


async def mark(server_pids: Sequence[int], clients: Sequence[Client], pinned: bool) -> Mark:
    """Marks every client at once; the CPU counters are read at the same moment.

    `server_pids`: the server's processes (an origin and its edges count together)."""
    for client in clients:
        client.send("mark")
    now = time.monotonic()
    server_cpu = sum(process_cpu_seconds(pid) for pid in server_pids)
    core0 = core_busy_seconds(0) if pinned else 0.0
    clients_cpu = sum(process_cpu_seconds(c.process.pid) for c in clients)
    replies = await asyncio.gather(*(c.expect("marked ", 30) for c in clients))
    return Mark(now, server_cpu, core0, clients_cpu, [json.loads(r) for r in replies])


def run_script(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> None:
    """Run an SFU bench's `main`: Janus installed first; SIGTERM or Ctrl-C stop every process
    it started; a failure ends the script with its reason. The exit status is 0 otherwise, a
    missed target included (a result, not an error)."""
    ensure_janus()

    async def timed() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        started = time.monotonic()
        await main(args)
        print(f"\ntook {time.monotonic() - started:.0f} s")

    try:
        asyncio.run(timed())
    except (BenchFailed, ServerFailed) as e:
        sys.exit(f"bench failed: {e}")
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("bench interrupted; every process it started was stopped")
