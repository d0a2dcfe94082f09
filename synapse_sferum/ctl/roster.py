"""`sferumctl roster import`: sends a OneRoster CSV bundle to the platform, shows what changed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from sferum_shared.adminapi import parse_roster_counts
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.tables import format_table

COUNT_COLUMNS = ("created", "updated", "deleted")


def roster_zip(path: Path) -> bytes:
    """The bundle as zip bytes: a zip file as it is, or a folder's CSV files zipped at the root."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise CtlError(f"{path}: no .csv files in this folder")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for file in files:
                bundle.write(file, arcname=file.name)
        return buffer.getvalue()
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise CtlError(f"{path}: not a zip file; give a .zip or a folder of OneRoster CSVs")
        return path.read_bytes()
    raise CtlError(f"{path}: no such file or folder")


def import_roster(deployment: Deployment, path: Path, *, dry_run: bool) -> list[str]:
    """Uploads the roster; returns the table of created/updated/deleted records by kind."""
    bundle = roster_zip(path)
    name = path.name if path.is_file() else f"{path.name}.zip"
    response = call(deployment, lambda api: api.import_roster(bundle, name=name, dry_run=dry_run))
    counts = parsed(parse_roster_counts, response)
    rows: list[list[str | int]] = [
        [kind, *(row.get(column, 0) for column in COUNT_COLUMNS)] for kind, row in counts.items()
    ]
    lines = format_table(["kind", *COUNT_COLUMNS], rows)
    return [*lines, "dry run: nothing was stored"] if dry_run else lines
