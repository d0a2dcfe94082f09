"""`sferumctl link-codes`: one-time codes with which people register themselves (docs/identity.md),
each also a link to the registration page, `<public base URL>/join#<CODE>`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from sferum_shared.adminapi import parse_link_codes
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment, public_base_url
from synapse_sferum.ctl.tables import format_table
from synapse_sferum.policy.invites import join_link

COLUMNS = ["person", "name", "code", "expires", "link"]


def _expires(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def issue_link_codes(
    deployment: Deployment,
    *,
    persons: Sequence[str],
    class_id: str | None,
    expires_days: int | None,
    output: str,
) -> list[str]:
    """Issues codes; `output` is "text" (a table), "json" or "csv"."""
    codes, skipped = parsed(
        parse_link_codes,
        call(
            deployment,
            lambda api: api.issue_link_codes(
                persons=persons, class_id=class_id, expires_days=expires_days
            ),
        )
    )
    base = public_base_url(deployment.load_config())
    if output == "json":
        body = {
            "codes": [{**attrs.asdict(c), "link": join_link(base, c.code)} for c in codes],
            "skipped": [attrs.asdict(s) for s in skipped],
        }
        return [json.dumps(body, ensure_ascii=False, indent=2)]
    rows = [
        [c.person, c.name, c.code, _expires(c.expires_ms), join_link(base, c.code)] for c in codes
    ]
    if output == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n").split("\n")
    lines = format_table(COLUMNS, rows) if rows else ["no codes issued"]
    if skipped:
        lines += ["", "skipped:"] + [f"  {s.person}: {s.reason}" for s in skipped]
    return lines
