"""The onboarding sheet as headless Chromium renders it: the cards are in the DOM, and the page
is drawn (a screenshot that is more than one blank colour)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from sferum_shared.adminapi import IssuedAccount
from synapse_sferum.ctl.sheet import render_sheet

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ACCOUNTS = [
    IssuedAccount("s-1", "@ivanov.ivan:school1.example.org", "Tq7-x9Lm", "Иван Иванов", ("5А",)),
    IssuedAccount("s-22", "@li:school1.example.org", None, "Ли Вэй", ("5А",)),
    IssuedAccount(
        "s-3", "@petrova.anna:school1.example.org", "Zz8_kP4q", "Анна <b>Петрова</b>", ("5А",)
    ),
]
TEACHER = IssuedAccount(
    "t-1", "@ivanova.marina:school1.example.org", "Kk9-m2Pq", "Марина Иванова", ("5А",), True
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline: no sandbox (we may be root), GPU, updates or sync."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (scripts/test installs it)")
def test_sheet_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "sheet.html"
    page.write_text(
        render_sheet(
            [*ACCOUNTS, TEACHER], heading="класс 5А", homeserver="https://school1.example.org"
        ),
        encoding="utf-8",
    )
    url = page.as_uri()

    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url).stdout
    assert dom.count('class="card"') == len(ACCOUNTS) + 1
    assert dom.count("<svg") == len(ACCOUNTS) + 1
    assert "Пароль выдан ранее" in dom and "Tq7-x9Lm" in dom
    assert "Анна &lt;b&gt;Петрова&lt;/b&gt;" in dom  # text, not markup

    png = tmp_path / "sheet.png"
    chromium(tmp_path / "profile-shot", f"--screenshot={png}", "--window-size=1240,1754", url)
    assert png.stat().st_size > 10_000
    with Image.open(png) as image:
        assert image.size == (1240, 1754)
        colours = image.convert("L").getcolors(maxcolors=256 * 256)
    assert colours is not None and len(colours) > 1  # not one blank colour
    # Mostly white paper, with a real share of dark ink (text and QR modules).
    dark = sum(count for count, level in colours if level < 128)
    assert dark > 0.005 * 1240 * 1754
