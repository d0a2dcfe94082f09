"""synapse-sferum installed from its wheel, not `pip install -e`, runs with no checkout behind it.

The wheel is built from a copy of the checkout's files (those git tracks or would track), so a
leftover build/ folder cannot lend it a file the source no longer has. It goes into a fresh venv
outside the checkout, which gets the project venv's dependencies (Synapse and the rest) from a
.pth file naming that venv's site-packages: a folder listed in a .pth is only appended to
sys.path, the editable install's own .pth files in it are not run, so the checkout stays out of
reach. Every command runs in a folder outside the checkout, with no PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.integration.harness import REPO, free_port

pytestmark = pytest.mark.integration

PACKAGES = ("synapse_sferum", "bridges", "sfu", "sferum_shared")
SERVER = "wheel.test"


@attrs.frozen
class Installed:
    """The wheel, and the venv it is installed in."""

    wheel: Path
    sources: list[str]  # the checkout's files the wheel was built from, relative to REPO
    python: Path
    sferumctl: Path
    site_packages: Path
    elsewhere: Path  # the working directory of every command: outside the checkout


def _run(*argv: str | Path, cwd: Path, check: bool = True) -> str:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0 or not check, (
        f"{' '.join(map(str, argv))} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def _checkout_files() -> list[str]:
    """What git tracks or would track, as the working tree has it now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.is_relative_to(REPO)
    sources, copy = _checkout_files(), root / "source"
    for name in sources:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    dist = root / "dist"
    # Offline: the build tools are the project venv's own (setup.cfg's test extra).
    pip = (sys.executable, "-m", "pip", "--no-input")
    _run(
        *pip, "wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", dist, ".", cwd=copy
    )
    [wheel] = dist.glob("*.whl")

    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    _run(*pip, "--python", python, "install", "--no-index", "--no-deps", wheel, cwd=root)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(_run(python, "-c", where, cwd=root).strip())
    project_venv = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (site_packages / "project-venv.pth").write_text("".join(f"{p}\n" for p in project_venv))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, sources, python, venv / "bin" / "sferumctl", site_packages, elsewhere)


def test_the_wheel_carries_every_file_of_the_packages(installed: Installed) -> None:
    """Templates, demo data, static pages, py.typed and every module's package."""
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    ours = [name for name in installed.sources if name.split("/")[0] in PACKAGES]
    assert "synapse_sferum/templates/homeserver.yaml.j2" in ours
    assert [name for name in ours if name not in in_wheel] == []


def test_the_packages_import_from_the_venv_not_the_checkout(installed: Installed) -> None:
    modules = [*PACKAGES, "synapse_sferum.store"]
    found = json.loads(
        _run(
            installed.python,
            "-c",
            "import importlib, json, sys; "
            "print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))",
            *modules,
            cwd=installed.elsewhere,
        )
    )
    for module in modules:
        assert found[module] is not None, f"{module} is a namespace package: no __init__.py"
        path = Path(found[module])
        assert path.is_relative_to(installed.site_packages), (module, path)
        assert not path.is_relative_to(REPO), (module, path)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


@pytest.fixture
def deployment(installed: Installed) -> Iterator[Path]:
    """A deployment folder of the installed sferumctl, stopped at the end whatever happened."""
    folder = installed.elsewhere / "hs"
    try:
        yield folder
    finally:
        _run(installed.sferumctl, "stop", folder, cwd=installed.elsewhere, check=False)


def test_the_installed_sferumctl_runs_synapse_with_the_module(
    installed: Installed, deployment: Path
) -> None:
    ctl, here, port = installed.sferumctl, installed.elsewhere, free_port()
    assert "demo roster" in _run(ctl, "demo-data", "demo", cwd=here)
    ports = ("--http-port", str(port), "--metrics-port", str(free_port()))
    _run(ctl, "init", deployment, "--server-name", SERVER, *ports, cwd=here)
    assert "config OK" in _run(ctl, "check-config", deployment, cwd=here)
    assert "synapse: healthy" in _run(ctl, "start", deployment, cwd=here)

    base = f"http://127.0.0.1:{port}"
    assert "versions" in json.loads(_get(f"{base}/_matrix/client/versions"))
    # The module's registration page, read from the installed package's static/.
    assert b'src="/join/static/join.js"' in _get(f"{base}/join")
    # The module's admin API takes the demo roster that the wheel's templates wrote.
    imported = _run(ctl, "roster", "import", deployment, here / "demo" / "roster", cwd=here)
    assert "people" in imported, imported
