"""`sferumctl person export|erase`: a person's copy of their data, and its erasure, as a school
owes them under 152-ФЗ (docs/identity.md, «Personal data»).

The export is one zip: Synapse's own `export-data` of the account, the module's rows about the
person, the files they uploaded, and the diary bridge's ledger entries of their diary. The erasure
redacts the account's events, deletes its files, deactivates it with erasure and removes the
module's rows, then says what stays and why.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sferum_shared.adminapi import (
    PersonData,
    parse_object,
    parse_person_data,
    parse_redact_id,
    parse_rooms,
)
from sferum_shared.matrix import MEMBER
from sferum_shared.rooms import RoomKey, RoomKind
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.deployment import Deployment, read_yaml_mapping
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.ledger import ledger_entries
from synapse_sferum.store.personal import ALSO_REDACTED, HELD

EXPORT_TIMEOUT_SECONDS = 1800.0
REDACT_TIMEOUT_SECONDS = 3600.0
REDACT_POLL_SECONDS = 0.5

# What erasing leaves, and why; the module's kept tables add their own reasons (store/personal.py).
KEPT = (
    "the roster row stays in the school's information system, the source of truth: erasing "
    "removes the platform's copy, and the next roster import brings the person back unless the "
    "school removed them there first",
    "the account's user ID stays reserved by Synapse: nobody can register it again",
    "the diary bridge's ledger keeps its entries of their diary (item keys, event IDs, content "
    "hashes; no text): without them the bridge would post every mark again",
    "events are redacted (messages, memberships, reactions, stickers, polls and votes) in the "
    "rooms the account is in; in rooms it has left, they stay until a moderator redacts them; "
    "redacted content stays in Synapse's database for its redaction_retention_period (7 days by "
    "default)",
)

README = """\
Выгрузка персональных данных: {person}
Аккаунт Matrix: {user_id}

Что в архиве:

synapse/   — выгрузка самого Synapse (python -m synapse.app.admin_cmd export-data): по каждой
             комнате события человека и состояние комнаты (rooms/<комната>/events, state,
             invite_state, knock_state); в user_data — данные аккаунта, устройства, подключения
             и профиль; media_ids — только сведения о файлах, сами файлы в media/.
sferum/    — строки модуля платформы о человеке, по таблицам (sferum/<таблица>.json): запись
             справочника школы, дата рождения, зачисления в классы, связи с законными
             представителями, привязка аккаунта и телефон, коды привязки, расписание тихих
             часов, отметки об уходе из списка школы и другие.
media/     — файлы, которые человек загрузил (media/<идентификатор>), и их описание
             (media/index.json: тип, размер, имя при загрузке, время).
diary/     — записи журнала моста электронного дневника о постах в дневник ученика
             (diary/ledger.json: ключ записи, идентификатор события; без текста оценок).
{notes}"""


# -- pure parts ---------------------------------------------------------------------------


def diary_alias(person: str) -> str:
    """The alias-scheme name of the person's diary room (pupils have one)."""
    return RoomKey(RoomKind.DIARY, person).alias_localpart()


def archive_entries(
    data: PersonData,
    synapse_files: Mapping[str, bytes],
    media_files: Mapping[str, bytes],
    ledger: list[dict[str, Any]],
    notes: Iterable[str],
) -> dict[str, bytes]:
    """The zip's files by name: README.txt, synapse/…, sferum/<table>.json, media/…, diary/…"""

    def as_json(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode()

    note_lines = "".join(f"\nВнимание: {note}\n" for note in notes)
    readme = README.format(person=data.person, user_id=data.user_id or "нет", notes=note_lines)
    entries = {"README.txt": readme.encode()}
    entries |= {f"synapse/{name}": body for name, body in synapse_files.items()}
    entries |= {f"sferum/{table}.json": as_json(rows) for table, rows in data.tables.items()}
    entries["media/index.json"] = as_json(data.media)
    entries |= {f"media/{media_id}": body for media_id, body in media_files.items()}
    entries["diary/ledger.json"] = as_json(ledger)
    return entries


def erase_plan(data: PersonData, ledger_entries: int) -> list[str]:
    """What erasing this person removes and what it keeps, as lines for the operator."""
    lines = [f"erase {data.person} ({data.user_id}):"]
    lines.append(f"  redact: every message and membership event of {data.user_id}")
    for event_type, name in ALSO_REDACTED.items():
        if data.other_events.get(event_type):
            lines.append(f"  redact: {data.other_events[event_type]} {name}")
    lines.append(f"  delete: {len(data.media)} uploaded file(s)")
    lines.append("  deactivate with erasure: devices, sessions, password, profile, phone")
    for held in HELD:
        rows = len(data.tables.get(held.table, []))
        if held.erased and rows:
            lines.append(f"  delete: {rows} row(s) of {held.table}")
    lines.append("keep:")
    for held in HELD:
        rows = len(data.tables.get(held.table, []))
        if not held.erased and rows:
            lines.append(f"  {rows} row(s) of {held.table}: {held.why_kept}")
    if ledger_entries:
        lines.append(f"  {ledger_entries} diary ledger entr(ies) of their diary room")
    lines += [f"  {reason}" for reason in KEPT]
    return lines


# -- reading --------------------------------------------------------------------------------


def _person_data(deployment: Deployment, person: str) -> PersonData:
    return parsed(parse_person_data, call(deployment, lambda api: api.person_data(person)))


def _ledger(deployment: Deployment, person: str) -> list[dict[str, Any]]:
    """The diary ledger's entries in the person's diary room (SQLite or PostgreSQL)."""
    config = read_yaml_mapping(deployment.bridge_config)
    database = str((config or {}).get("database") or "")
    if not database:
        return []  # no diary bridge in this deployment
    response = call(deployment, lambda api: api.rooms([diary_alias(person)]))
    room_id = parsed(parse_rooms, response).get(diary_alias(person))
    return [] if room_id is None else ledger_entries(database, room_id)


def _synapse_export(deployment: Deployment, user_id: str) -> dict[str, bytes]:
    """Synapse's `export-data` of the account, run against the live database."""
    config_args = [arg for path in deployment.config_files() for arg in ("-c", str(path))]
    with tempfile.TemporaryDirectory(prefix="sferum-export-") as tmp:
        out = Path(tmp) / "export"
        argv = [sys.executable, "-m", "synapse.app.admin_cmd", *config_args]
        argv += ["export-data", user_id, "--output-directory", str(out)]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired:
            raise CtlError(f"Synapse's export-data of {user_id} took too long") from None
        if done.returncode != 0:
            raise CtlError(
                f"Synapse's export-data of {user_id} failed (exit {done.returncode})",
                details=done.stderr.strip().splitlines()[-15:],
            )
        return {
            str(path.relative_to(out)): path.read_bytes()
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }


def _media_files(deployment: Deployment, media: list[dict[str, Any]]) -> dict[str, bytes]:
    """The uploads' bytes from the media store (`local_content/aa/bb/rest`)."""
    store = Path(deployment.load_config().get("media_store_path") or deployment.media_store)
    files = {}
    for item in media:
        media_id = item["media_id"]
        path = store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
        try:
            files[media_id] = path.read_bytes()
        except OSError as e:
            raise CtlError(f"cannot read the upload {media_id} at {path}: {e}") from None
    return files


# -- the commands ---------------------------------------------------------------------------


def export(deployment: Deployment, person: str, out: Path, *, dry_run: bool) -> list[str]:
    """Writes the person's zip to `out` (never over an existing file); lines to print."""
    if out.exists():
        raise CtlError(f"{out} exists; give a new file name (an export is never overwritten)")
    if not out.parent.is_dir():
        raise CtlError(f"{out.parent} is not a folder")
    data = _person_data(deployment, person)
    ledger, notes = _ledger(deployment, person), []
    if data.user_id is None:
        notes.append("у человека нет аккаунта: выгрузки Synapse и файлов нет")
    rows = sum(len(r) for r in data.tables.values())
    lines = [
        f"{person}: account {data.user_id or 'none'}, {rows} module row(s), "
        f"{len(data.media)} upload(s), {len(ledger)} diary ledger entr(ies)",
        *notes,
    ]
    if dry_run:
        return [*lines, f"dry run: {out} not written"]
    synapse_files = {} if data.user_id is None else _synapse_export(deployment, data.user_id)
    media_files = _media_files(deployment, data.media)
    entries = archive_entries(data, synapse_files, media_files, ledger, notes)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
    try:
        with out.open("xb") as f:
            f.write(buffer.getvalue())
    except OSError as e:
        raise CtlError(f"cannot write {out}: {e}") from None
    return [*lines, f"wrote {out} ({len(entries)} files)"]


def erase(
    deployment: Deployment,
    person: str,
    *,
    dry_run: bool,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Erases the person's account and the module's rows about them, saying each step."""
    data = _person_data(deployment, person)
    if data.user_id is None:
        raise CtlError(
            f"{person} has no account on the platform: there is nothing to erase in Synapse",
            details=["their roster rows go with the school's next roster import without them"],
        )
    ledger = _ledger(deployment, person)
    for line in erase_plan(data, len(ledger)):
        say(line)
    if dry_run:
        say("dry run: nothing changed")
        return
    done: list[str] = []
    try:
        _redact(deployment, person, say, sleep)
        done.append("events redacted")
        result = parsed(parse_object, call(deployment, lambda api: api.person_erase(person)))
    except CtlError as e:
        raise CtlError(
            f"erasing {person} stopped: {e.message}",
            details=[
                *e.details,
                f"done: {', '.join(done) or 'nothing'}",
                f"run again: sferumctl person erase {deployment.root} {person} "
                "(every step is safe to repeat)",
            ],
            exit_code=e.exit_code,
        ) from None
    rows = sum(result.get("rows_deleted", {}).values())
    say(f"deleted {result.get('media_deleted', 0)} upload(s); {data.user_id} deactivated")
    say(f"deleted {rows} module row(s); {person} erased")


def _redact(
    deployment: Deployment, person: str, say: Callable[[str], None], sleep: Callable[[float], None]
) -> None:
    redact_id = parsed(parse_redact_id, call(deployment, lambda api: api.person_redact(person)))
    say(f"redacting their events (Synapse task {redact_id})…")
    deadline = time.monotonic() + REDACT_TIMEOUT_SECONDS
    while True:
        response = call(deployment, lambda api: api.person_redact_status(redact_id))
        status = parsed(parse_object, response)
        if status.get("status") == "complete":
            break
        if status.get("status") == "failed":
            raise CtlError(f"Synapse's redaction failed: {status.get('error')}")
        if time.monotonic() > deadline:
            raise CtlError(f"Synapse's redaction {redact_id} is still {status.get('status')}")
        sleep(REDACT_POLL_SECONDS)
    failed = status.get("failed_redactions") or []
    memberships = [f for f in failed if f.get("type") == MEMBER]
    others = [f for f in failed if f.get("type") != MEMBER]
    if memberships:
        say(
            f"  kept: {len(memberships)} membership event(s) in the platform's rooms, which the "
            "school's rules protect; their display name stays on them for members who saw them "
            "(Synapse's erasure hides them from later joiners)"
        )
    for f in others:
        say(f"  not redacted: {f.get('event_id')} ({f.get('type')}): {f.get('reason')}")
    if others:
        raise CtlError(f"{len(others)} event(s) could not be redacted")
    _redact_more(deployment, person, say)
    say("events redacted")


def _redact_more(deployment: Deployment, person: str, say: Callable[[str], None]) -> None:
    """Redacts, batch after batch, what Synapse's redaction leaves: reactions, stickers, polls
    and votes."""
    total: dict[str, int] = {}
    while True:
        batch = parsed(parse_object, call(deployment, lambda api: api.person_redact_more(person)))
        for event_type, count in (batch.get("redacted") or {}).items():
            total[event_type] = total.get(event_type, 0) + int(count)
        for f in batch.get("failed") or []:
            say(f"  not redacted: {f.get('event_id')} ({f.get('type')}): {f.get('reason')}")
            raise CtlError("an event could not be redacted")
        if not batch.get("more"):
            break
    done = [f"{total[t]} {name}" for t, name in ALSO_REDACTED.items() if total.get(t)]
    if done:
        say(f"  redacted {', '.join(done)}")
