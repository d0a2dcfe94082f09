"""Files people upload and post (issue 15): how large, how much, and which kinds never.

Limits follow the person's role (a teacher sends a lesson's video, a pupil a photo of homework);
programs and scripts are refused outright, by what the file is (its first bytes, when it is
uploaded) and by what a message says it is (its declared type or name, when it is posted), as a
file renamed to `.pdf` is still a program and a message may point at a file of another server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sferum_shared import matrix
from sferum_shared.model import Member, Role
from sferum_shared.vocabulary import Reason
from synapse_sferum.policy.decision import ALLOW, Decision, refuse

MIB = 1024 * 1024
DAY_MS = 24 * 60 * 60 * 1000


@attrs.frozen
class Quota:
    max_bytes: int
    period_ms: int


def _largest(member: Member | None, by_role: Mapping[Role, int]) -> int | None:
    """A person with several roles (a teacher who is also a parent) gets the largest; None
    for accounts outside the directory (the platform's own, an operator's)."""
    values = [by_role[role] for role in member.roles if role in by_role] if member else []
    return max(values) if values else None


def upload_limit(member: Member | None, mib_by_role: Mapping[Role, int]) -> int | None:
    """The largest upload, in bytes; None: Synapse's `max_upload_size` holds."""
    mib = _largest(member, mib_by_role)
    return None if mib is None else mib * MIB


def upload_quota(
    member: Member | None, mib_by_role: Mapping[Role, int], period_days: int
) -> Quota | None:
    mib = _largest(member, mib_by_role)
    return None if mib is None else Quota(mib * MIB, period_days * DAY_MS)


# The first bytes of programs a phone or a computer would run (names for the log).
_PROGRAM_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"\xfe\xed\xfa\xce", "a macOS program"),
    (b"\xfe\xed\xfa\xcf", "a macOS program"),
    (b"\xce\xfa\xed\xfe", "a macOS program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"\xca\xfe\xba\xbe", "a macOS or Java program"),
    (b"#!", "a script"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "a Windows shortcut"),
)
# How many bytes of a file `program_kind` needs.
SIGNATURE_BYTES = max(len(signature) for signature, _ in _PROGRAM_SIGNATURES)


def program_kind(head: bytes) -> str | None:
    """What kind of program a file is, by its first bytes; None for anything else."""
    found = (kind for signature, kind in _PROGRAM_SIGNATURES if head.startswith(signature))
    return next(found, None)


# Declared types and names of programs and scripts, as messages carry them (`info.mimetype`,
# `filename` or `body`). Installers for phones (.apk) are programs too.
REFUSED_MIMETYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-dosexec",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/x-elf",
        "application/x-mach-binary",
        "application/x-sh",
        "application/x-shellscript",
        "text/x-shellscript",
        "application/x-bat",
        "application/x-msi",
        "application/vnd.android.package-archive",
        "application/java-archive",
        "application/x-ms-shortcut",
    }
)
REFUSED_EXTENSIONS = frozenset(
    {
        "exe", "msi", "bat", "cmd", "com", "scr", "pif", "cpl", "ps1", "vbs", "vbe", "js",
        "jse", "wsf", "hta", "lnk", "jar", "apk", "sh", "app", "dmg", "reg",
    }
)  # fmt: skip
_FILE_MSGTYPES = frozenset({"m.file", "m.image", "m.video", "m.audio"})


def _extension(name: Any) -> str:
    if not isinstance(name, str) or "." not in name:
        return ""
    return name.rsplit(".", 1)[1].strip().lower()


def may_post_file(event_type: str, content: Mapping[str, Any]) -> Decision:
    """A message with a file is refused when it says the file is a program or a script."""
    if event_type != matrix.MESSAGE or content.get("msgtype") not in _FILE_MSGTYPES:
        return ALLOW
    info = content.get("info")
    mimetype = info.get("mimetype") if isinstance(info, Mapping) else None
    if isinstance(mimetype, str) and mimetype.split(";")[0].strip().lower() in REFUSED_MIMETYPES:
        return refuse(Reason.FILE_TYPE_REFUSED)
    # With a `filename`, the body is a caption (MSC2530): "see example.com" names no file.
    filename = content.get("filename")
    name = filename if isinstance(filename, str) else content.get("body")
    if _extension(name) in REFUSED_EXTENSIONS:
        return refuse(Reason.FILE_TYPE_REFUSED)
    return ALLOW
