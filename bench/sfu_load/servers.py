"""The servers under test: started on a free port, waited for, measured, stopped by PID.

* ``sfu``: ``python -m sfu CONFIG.yaml`` with a config written here (the homeserver and admin
  API URLs point at a closed port: only ``/get_token`` uses them, and the bench mints tokens);
* ``relay``: ``python -m bench.sfu_load.relay``;
* ``janus``: Debian's ``janus`` with a config folder of its own: the packaged janus.jcfg gives
  the library folders; everything else is written here. Only the videoroom plugin and the
  plain-HTTP transport are loaded (every other plugin, transport, logger and event handler
  library is listed under ``disable``), the admin API is off, and ICE gathers on the one IPv4
  address aiortc's own host candidates use (aiortc never offers 127.0.0.1), so both ends of
  every connection are on this host and nothing leaves it.

CPU is read from ``/proc/PID/stat`` (utime + stime: every thread of the process), and the load
of a whole core from ``/proc/stat``, so that other work on a shared machine shows.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import aioice.ice
import attrs
import yaml

from bench.sfu_load.signalling import Target
from sfu import tokens
from tests.integration.harness import free_port

REPO = Path(__file__).resolve().parents[2]
PACKAGED_JANUS_CONFIG = Path("/etc/janus/janus.jcfg")
READY_SECONDS = 30.0
STOP_SECONDS = 10.0
BENCH_ROOM = "!bench:bench.test"
TICKS = os.sysconf("SC_CLK_TCK")
EDGES = 2  # the `edges` kind: an origin and this many edges, as `--sfu-edges 2` deploys


class ServerFailed(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


def ensure_janus() -> None:
    """Install Debian's janus as scripts/lib/bootstrap.sh installs system packages."""
    if shutil.which("janus"):
        return
    bootstrap = REPO / "scripts" / "lib" / "bootstrap.sh"
    subprocess.run(["bash", "-c", f'source "{bootstrap}" && ensure_apt janus:janus'], check=True)
    if not shutil.which("janus"):
        raise ServerFailed("apt installed no `janus` program")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pinning() -> tuple[list[str], list[str]] | None:
    """taskset prefixes for the server (core 0) and the clients (core 1), if both exist."""
    if shutil.which("taskset") is None or not {0, 1} <= os.sched_getaffinity(0):
        return None
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15


def core_busy_seconds(core: int) -> float:
    """Time core `core` spent busy (anything but idle and iowait) since boot."""
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name == f"cpu{core}":
                ticks = [int(v) for v in values]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS
    raise ValueError(f"no cpu{core} in /proc/stat")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_SECONDS."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


@attrs.define(eq=False)
class Server:
    kind: str
    target: Target
    process: asyncio.subprocess.Process
    log: Path
    edges: list[asyncio.subprocess.Process] = attrs.Factory(list)

    @property
    def pids(self) -> list[int]:
        """The server's processes: its CPU is theirs together."""
        return [self.process.pid, *(edge.pid for edge in self.edges)]

    async def stop(self) -> None:
        for process in [*self.edges, self.process]:
            await stop_process(process)


async def _spawn(argv: list[str], log: Path) -> asyncio.subprocess.Process:
    """A child in its own session (Ctrl-C reaches only us; we stop it by PID), logging to `log`."""
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


async def _wait_http(process: asyncio.subprocess.Process, url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    await stop_process(process)
    raise ServerFailed(f"{url} did not answer 200 in {READY_SECONDS} s; log:\n{log_tail(log)}")


async def start_server(kind: str, folder: Path, prefix: list[str]) -> Server:
    """Start one server of `kind` with its files in `folder`, ready for clients."""
    folder.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), folder / f"{kind}.log"
    if kind in ("sfu", "livekit", "edges"):  # one SFU, reached through either protocol
        secret = secrets.token_urlsafe(32)
        argv = [sys.executable, "-m", "sfu", str(_sfu_config(folder, port, secret))]
        url = f"ws://127.0.0.1:{port}" + ("/ws" if kind != "livekit" else "")
        target = Target(kind, url, tokens.room_name(BENCH_ROOM), secret)
        health = f"http://127.0.0.1:{port}/health"
    elif kind == "relay":
        argv = [sys.executable, "-m", "bench.sfu_load.relay", "--port", str(port)]
        target = Target("relay", f"http://127.0.0.1:{port}")
        health = f"http://127.0.0.1:{port}/health"
    elif kind == "janus":
        config = _janus_config(folder / "janus-config", port)
        argv = ["janus", "--disable-colors", "--configs-folder", str(config)]
        argv += ["--config", str(config / "janus.jcfg")]
        target = Target("janus", f"http://127.0.0.1:{port}/janus", str(secrets.randbelow(1 << 31)))
        health = f"http://127.0.0.1:{port}/janus/info"
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    process = await _spawn([*prefix, *argv], log)
    await _wait_http(process, health, log)
    server = Server(kind, target, process, log)
    if kind == "edges":
        try:
            server.target = await _start_edges(server, folder, prefix)
        except BaseException:
            await server.stop()
            raise
    return server


async def _start_edges(server: Server, folder: Path, prefix: list[str]) -> Target:
    """The origin's edges (`sfu.edge`), as `sferumctl init --sfu-edges` runs them: each relays
    the origin's broadcast to the viewers it is given."""
    urls = []
    for number in range(1, EDGES + 1):
        port, log = free_port(), folder / f"edge-{number}.log"
        config = _sfu_config(folder, port, server.target.secret, origin_url=server.target.url)
        process = await _spawn([*prefix, sys.executable, "-m", "sfu", str(config)], log)
        server.edges.append(process)
        await _wait_http(process, f"http://127.0.0.1:{port}/health", log)
        urls.append(f"ws://127.0.0.1:{port}/ws")
    return attrs.evolve(server.target, edge_urls=urls)


def _sfu_config(folder: Path, port: int, secret: str, origin_url: str = "") -> Path:
    config: dict[str, object] = {
        "server_name": "bench.test",
        "homeserver_url": "http://127.0.0.1:9",  # only /get_token calls these
        "admin_api_url": "http://127.0.0.1:9",
        "admin_api_secret": secrets.token_urlsafe(16),
        "jwt_secret": secret,
        "sfu_url": f"ws://127.0.0.1:{port}/ws",
        "http": {"bind": "127.0.0.1", "port": port},
    }
    if origin_url:
        config["origin_url"] = origin_url
    path = folder / f"sfu-{port}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _packaged_folders() -> dict[str, str]:
    """The library folders of the packaged janus.jcfg (their path depends on the architecture)."""
    text = PACKAGED_JANUS_CONFIG.read_text(encoding="utf-8")
    names = ("plugins_folder", "transports_folder", "events_folder", "loggers_folder")
    folders = {}
    for name in names:
        found = re.search(rf'^\s*{name}\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if found is None:
            raise ServerFailed(f"{PACKAGED_JANUS_CONFIG} names no {name}")
        folders[name] = found.group(1)
    return folders


def _all_but(folder: str, keep: str) -> str:
    """Janus's ``disable`` list: every library in `folder` except `keep`."""
    names = sorted(p.name for p in Path(folder).glob("libjanus_*.so") if p.name != keep)
    return ",".join(names)


def _janus_config(folder: Path, port: int) -> Path:
    folders = _packaged_folders()
    folder.mkdir(parents=True, exist_ok=True)
    general = "\n".join(f'\t{name} = "{path}"' for name, path in folders.items())
    ice_address = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)[0]
    (folder / "janus.jcfg").write_text(
        f"""general: {{
\tconfigs_folder = "{folder}"
{general}
\tdebug_level = 3
\tsession_timeout = 60
}}
certificates: {{
}}
media: {{
}}
nat: {{
\tnice_debug = false
\tignore_mdns = true
\tice_enforce_list = "{ice_address}"
}}
plugins: {{
\tdisable = "{_all_but(folders["plugins_folder"], "libjanus_videoroom.so")}"
}}
transports: {{
\tdisable = "{_all_but(folders["transports_folder"], "libjanus_http.so")}"
}}
loggers: {{
\tdisable = "{_all_but(folders["loggers_folder"], "")}"
}}
events: {{
\tbroadcast = false
\tdisable = "{_all_but(folders["events_folder"], "")}"
}}
""",
        encoding="utf-8",
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
\tjson = "compact"
\tbase_path = "/janus"
\thttp = true
\tip = "127.0.0.1"
\tport = {port}
\thttps = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
cors: {{
}}
""",
        encoding="utf-8",
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n", encoding="utf-8")
    return folder
