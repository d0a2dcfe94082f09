"""`sferumctl`: the admin's command line. Every command takes DIR, a deployment folder.

Exit codes: 0 success; 1 bad input, bad config or a request the server rejected; 2 the server is
unreachable, refused the admin secret or failed (and argparse's usage errors); 3 `status` found a
service stopped or unhealthy.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sferum_shared import SYSTEM_CLOCK
from sferum_shared.adminapi import parse_reconcile
from synapse_sferum.ctl import backup, demo, diary, news, params, person, services, sheet, systemd
from synapse_sferum.ctl.accounts import (
    account_lines,
    fetch_accounts,
    issue_accounts,
    reset_accounts,
)
from synapse_sferum.ctl.adminapi import call, parsed
from synapse_sferum.ctl.checkconfig import check_config
from synapse_sferum.ctl.deploy import init
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.errors import EXIT_NOT_RUNNING, CtlError
from synapse_sferum.ctl.linkcodes import issue_link_codes
from synapse_sferum.ctl.rooms import upgrade_room
from synapse_sferum.ctl.roster import import_roster
from synapse_sferum.ctl.stickers import import_stickers
from synapse_sferum.ctl.tables import format_table

say = functools.partial(print, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except CtlError as e:
        print(f"{args.command}: {e.message}", file=sys.stderr)
        for line in e.details:
            print(line, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return result


def _say_lines(lines: Iterable[str]) -> None:
    for line in lines:
        say(line)


def _init(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    _say_lines([*init(deployment, _init_params(args)), f"next: sferumctl start {deployment.root}"])
    return 0


def _init_params(args: argparse.Namespace) -> params.InitParams:
    return params.InitParams(**{name: getattr(args, name, None) for name in params.PARSERS})


def _backup(args: argparse.Namespace) -> int:
    _say_lines(backup.backup(Deployment(args.dir), args.out, SYSTEM_CLOCK))
    return 0


def _restore(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    lines = backup.restore(args.out, deployment, _init_params(args))
    _say_lines([*lines, f"next: sferumctl start {deployment.root}"])
    return 0


def _check_config(args: argparse.Namespace) -> int:
    check_config(Deployment(args.dir))
    say("config OK")
    return 0


def _checked_supervision(args: argparse.Namespace) -> services.Supervision:
    """The deployment's services (on `--host` only, if given) under their supervisor, once its
    config passes check-config."""
    deployment = Deployment(args.dir)
    return services.deployment_supervision(deployment, check_config(deployment), args.host)


def _start(args: argparse.Namespace) -> int:
    services.start(_checked_supervision(args), timeout=args.timeout, say=say)
    return 0


def _run(args: argparse.Namespace) -> int:
    services.run(_checked_supervision(args), timeout=args.timeout, say=say)
    return 0


def _stop(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    try:
        found = services.deployment_supervision(deployment, deployment.load_config(), args.host)
    except CtlError:  # a broken config must not keep a server from stopping
        found = services.deployment_supervision(deployment, None, args.host)
    services.stop(found, say=say)
    return 0


def _status(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    lines, all_ok = services.status(
        services.deployment_supervision(deployment, deployment.load_config(), args.host)
    )
    _say_lines(lines)
    return 0 if all_ok else EXIT_NOT_RUNNING


def _systemd(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    out = args.out or deployment.root / "systemd"
    _say_lines(systemd.write_units(deployment, check_config(deployment), out, user=args.user))
    return 0


def _roster_import(args: argparse.Namespace) -> int:
    _say_lines(import_roster(Deployment(args.dir), args.path, dry_run=args.dry_run))
    return 0


def _person_export(args: argparse.Namespace) -> int:
    _say_lines(person.export(Deployment(args.dir), args.person, args.out, dry_run=args.dry_run))
    return 0


def _person_erase(args: argparse.Namespace) -> int:
    person.erase(Deployment(args.dir), args.person, dry_run=args.dry_run, say=say)
    return 0


def _accounts_issue(args: argparse.Namespace) -> int:
    _say_lines(
        issue_accounts(
            Deployment(args.dir),
            persons=args.person or (),
            class_id=args.class_id,
            output=args.format,
        )
    )
    return 0


def _link_codes(args: argparse.Namespace) -> int:
    _say_lines(
        issue_link_codes(
            Deployment(args.dir),
            persons=args.person or (),
            class_id=args.class_id,
            expires_days=args.expires,
            output=args.format,
        )
    )
    return 0


def _stickers_import(args: argparse.Namespace) -> int:
    _say_lines(
        import_stickers(Deployment(args.dir), args.folder, class_id=args.class_id, name=args.name)
    )
    return 0


def _news_post(args: argparse.Namespace) -> int:
    _say_lines(
        news.post_article(
            Deployment(args.dir),
            args.file,
            author=args.author,
            title=args.title,
            pin=args.pin,
            key=args.key,
            school=args.school,
        )
    )
    return 0


def _days(value: object) -> int:
    if not str(value).isdigit() or not 1 <= int(str(value)) <= 365:
        raise ValueError(f"must be a whole number of days from 1 to 365, got {value!r}")
    return int(str(value))


def _accounts_sheet(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    count = sheet.write_sheet(
        deployment,
        args.out,
        lambda accounts: sheet.class_heading(args.class_id, accounts),
        lambda: fetch_accounts(deployment, class_id=args.class_id),
    )
    say(f"wrote {args.out} ({count} cards)")
    return 0


def _accounts_reset(args: argparse.Namespace) -> int:
    deployment = Deployment(args.dir)
    persons = list(args.person)
    if args.out is None:
        _say_lines(account_lines(reset_accounts(deployment, persons), args.format))
        return 0
    count = sheet.write_sheet(
        deployment,
        args.out,
        lambda accounts: "новые пароли",
        lambda: reset_accounts(deployment, persons),
    )
    say(f"wrote {args.out} ({count} cards)")
    return 0


def _diary_sync(args: argparse.Namespace) -> int:
    report = diary.sync_now(Deployment(args.dir))
    _say_lines(format_table(["what", "count"], [[k, v] for k, v in report.items()]))
    return 1 if report.get("failed") else 0


def _demo_data(args: argparse.Namespace) -> int:
    today = args.today or SYSTEM_CLOCK.today(zoneinfo.ZoneInfo(demo.DEMO_TIMEZONE))
    for part, folder in demo.write_demo(args.dir, today).items():
        say(f"wrote the demo {part} for {today.isoformat()} into {folder}")
    return 0


def _iso_date(value: object) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"must be a date written as YYYY-MM-DD, got {value!r}") from None


def _rooms_upgrade(args: argparse.Namespace) -> int:
    _say_lines(upgrade_room(Deployment(args.dir), args.room, args.version))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    report = parsed(parse_reconcile, call(Deployment(args.dir), lambda api: api.reconcile()))
    _say_lines(format_table(["change", "count"], [[k, v] for k, v in report.items()]))
    if report.get("failures"):
        _say_lines(["some changes failed; the server's log says why"])
        return 1
    return 0


def _checked(parse: Callable[[object], Any]) -> Callable[[str], Any]:
    """An argparse `type` that reports the parser's own message (argparse hides ValueErrors)."""

    @functools.wraps(parse)
    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _seconds(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ValueError(f"must be a number of seconds, above 0 and at most a day, got {value!r}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sferumctl", description="Set up, run and feed a synapse-sferum school server."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help: str,
        within: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
        full_name: str | None = None,
        before_dir: tuple[str, str] | None = None,  # a positional before DIR: (name, help)
    ) -> argparse.ArgumentParser:
        sub = within.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler, command=full_name or name)
        if before_dir is not None:
            sub.add_argument(
                before_dir[0], metavar=before_dir[0].upper(), type=Path, help=before_dir[1]
            )
        sub.add_argument("dir", metavar="DIR", type=Path, help="the deployment folder")
        return sub

    def init_options(
        p: argparse.ArgumentParser,
        skip: tuple[str, ...] = (),
        also: Mapping[str, str] | None = None,
    ) -> None:
        """init's options; `also` gives some of them a second flag."""
        for option in params.INIT_OPTIONS:
            if option.name in skip:
                continue
            second = (also or {}).get(option.name)
            flags = [option.option, *([second] if second else [])]
            p.add_argument(
                *flags,
                dest=option.name,
                type=_checked(option.each or option.parse),
                metavar=option.metavar,
                help=option.help,
                **option.gather,
            )

    init_options(
        command(
            "init",
            _init,
            "create a deployment folder, or re-render its config files "
            "(secrets, keys, database and media are kept)",
        )
    )

    p = command(
        "backup",
        _backup,
        "copy a deployment, running or not, into the new folder OUT: its databases (SQLite's "
        "online backup, pg_dump), media, signing key, secrets and configs, then a manifest "
        "of every file's sha256",
    )
    p.add_argument("out", metavar="OUT", type=Path, help="the backup folder (new or empty)")
    init_options(
        command(
            "restore",
            _restore,
            "make the new deployment DIR from a backup (checked against its manifest first): "
            "the same server, with init's options over the stored ones (a new port, database...)",
            before_dir=("out", "the backup: the folder that `sferumctl backup` wrote"),
        ),
        skip=("server_name",),
        also={"http_port": "--port"},
    )
    command(
        "check-config",
        _check_config,
        "check homeserver.yaml plus conf.d/*.yaml as Synapse and the module will",
    )
    host_help = (
        "only the processes of the host with this address (`init --worker-hosts`): its "
        "workers, or, for main's address, main with Redis, nginx and the rest"
    )
    for name, handler, text in (
        (
            "start",
            _start,
            "check the config, start the supervisor and the services in the background, wait "
            "until they are healthy",
        ),
        ("run", _run, "like start, then stay in the foreground; Ctrl-C or SIGTERM stops all"),
    ):
        p = command(name, handler, text)
        p.add_argument(
            "--timeout",
            type=_checked(_seconds),
            default=services.DEFAULT_START_TIMEOUT,
            metavar="SECONDS",
            help="how long to wait for health (default %(default)g)",
        )
        p.add_argument(
            "--host", type=_checked(params.bind_address), metavar="ADDR", help=host_help
        )
    for name, handler, text in (
        (
            "stop",
            _stop,
            "stop the supervisor and the services (each: SIGTERM, then SIGKILL after "
            f"{services.STOP_GRACE_SECONDS:g} s)",
        ),
        (
            "status",
            _status,
            "show the supervisor and each service (restarts, last exit); exit 0 if all run "
            f"and are healthy, {EXIT_NOT_RUNNING} otherwise",
        ),
    ):
        command(name, handler, text).add_argument(
            "--host", type=_checked(params.bind_address), metavar="ADDR", help=host_help
        )
    p = command(
        "systemd",
        _systemd,
        "write a systemd unit per service and a target that groups them, instead of the "
        "supervisor",
    )
    p.add_argument("--user", metavar="USER", help="the services' user (default: DIR's owner)")
    p.add_argument("--out", type=Path, metavar="FOLDER", help="where to write them (DIR/systemd)")

    roster = commands.add_parser("roster", help="the school directory").add_subparsers(
        title="roster commands", required=True, metavar="COMMAND"
    )
    p = command(
        "import",
        _roster_import,
        "upload a OneRoster CSV bundle (folder or zip)",
        within=roster,
        full_name="roster import",
    )
    p.add_argument("path", metavar="PATH", type=Path, help="OneRoster CSV folder or .zip")
    p.add_argument(
        "--dry-run", action="store_true", help="check and count the changes without storing them"
    )

    room_commands = commands.add_parser("rooms", help="the provisioned rooms").add_subparsers(
        title="rooms commands", required=True, metavar="COMMAND"
    )
    p = command(
        "upgrade",
        _rooms_upgrade,
        "upgrade a room the platform made to a new room version, as the platform: the new "
        "room keeps its kind, widgets, packs, pins, space links and members",
        within=room_commands,
        full_name="rooms upgrade",
    )
    p.add_argument("room", metavar="ROOM", help="the room's ID (!…) or alias (#…)")
    p.add_argument(
        "--version", help="the room version (default: the server's default_room_version)"
    )

    command(
        "reconcile",
        _reconcile,
        "bring rooms and memberships in line with the directory "
        "now (the server also does this after imports and every few minutes)",
    )

    accounts = commands.add_parser("accounts", help="accounts of people").add_subparsers(
        title="accounts commands", required=True, metavar="COMMAND"
    )
    p = command(
        "issue",
        _accounts_issue,
        "create accounts for people of the directory and show their one-time passwords",
        within=accounts,
        full_name="accounts issue",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--person",
        nargs="+",
        action="extend",
        metavar="SOURCEDID",
        help="the people's sourcedIds in the roster",
    )
    who.add_argument(
        "--class",
        dest="class_id",
        metavar="CLASSID",
        help="everyone in this class (its sourcedId)",
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="a table (default) or JSON"
    )
    p = command(
        "sheet",
        _accounts_sheet,
        "create accounts for a class's pupils and write "
        "printable sign-in cards (HTML, with QR codes)",
        within=accounts,
        full_name="accounts sheet",
    )
    p.add_argument(
        "--class", dest="class_id", required=True, metavar="CLASSID", help="the class's sourcedId"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE.html",
        help="the page to create (never overwritten: it holds passwords)",
    )
    p = command(
        "reset",
        _accounts_reset,
        "print a new card for people who lost theirs (or whose account was taken): the "
        "account's own password is cleared, every session signed out, the old card void",
        within=accounts,
        full_name="accounts reset",
    )
    p.add_argument(
        "--person",
        nargs="+",
        action="extend",
        required=True,
        metavar="SOURCEDID",
        help="the people's sourcedIds in the roster (each must have an account)",
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="a table (default) or JSON"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.html",
        help="print the new cards into this page (never overwritten) instead of a table",
    )

    p = command(
        "link-codes",
        _link_codes,
        "issue one-time linking codes: with one and a phone "
        "number checked by SMS, a person registers in any Matrix client",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--person",
        nargs="+",
        action="extend",
        metavar="SOURCEDID",
        help="the people's sourcedIds in the roster (all must be able to register)",
    )
    who.add_argument(
        "--class",
        dest="class_id",
        metavar="CLASSID",
        help="everyone in the class and its pupils' guardians who has no account "
        "yet (those who may not register are listed as skipped)",
    )
    p.add_argument(
        "--expires",
        type=_checked(_days),
        metavar="DAYS",
        help="days the codes stay valid (default: the module's link_codes.expiry_days)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="a table (default), JSON or CSV",
    )

    people = commands.add_parser(
        "person", help="a person's data: a copy for them, or its erasure (152-ФЗ)"
    ).add_subparsers(title="person commands", required=True, metavar="COMMAND")
    p = command(
        "export",
        _person_export,
        "write a zip of everything the platform holds about a person: Synapse's export of "
        "their account, the module's rows, their uploads, the diary ledger's entries",
        within=people,
        full_name="person export",
    )
    p.add_argument("person", metavar="PERSON", help="the person's sourcedId in the roster")
    p.add_argument("out", metavar="OUT.zip", type=Path, help="the zip to write (must not exist)")
    p.add_argument("--dry-run", action="store_true", help="say what would be exported")
    p = command(
        "erase",
        _person_erase,
        "redact a person's events, delete their uploads, deactivate their account with "
        "erasure and remove the platform's rows about them; says what is kept and why",
        within=people,
        full_name="person erase",
    )
    p.add_argument("person", metavar="PERSON", help="the person's sourcedId in the roster")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be erased and kept; change nothing"
    )

    p = command(
        "demo-data",
        _demo_data,
        "write the demo school's roster (DIR/roster), diary export (DIR/diary), sticker pack "
        "(DIR/stickers) and news article (DIR/news), dated relative to today: this week's "
        "timetable, recent marks, homework due soon, next week's open lessons",
    )
    p.add_argument(
        "--today",
        type=_checked(_iso_date),
        metavar="YYYY-MM-DD",
        help="the day to date the data for (default: today in the demo school's time zone)",
    )

    sticker_commands = commands.add_parser(
        "stickers", help="the school's sticker packs"
    ).add_subparsers(title="stickers commands", required=True, metavar="COMMAND")
    p = command(
        "import",
        _stickers_import,
        "make a folder of pictures (PNG, WebP, GIF; the file names become the :shortcodes:) "
        "the school's sticker pack, or a class's, offered to every member in their apps",
        within=sticker_commands,
        full_name="stickers import",
    )
    p.add_argument("folder", metavar="FOLDER", type=Path, help="the pictures")
    p.add_argument(
        "--class",
        dest="class_id",
        metavar="CLASSID",
        help="the class (sourcedId) whose own pack this is (default: the whole school's)",
    )
    p.add_argument("--name", help="the pack's name in apps (default «Стикеры школы»)")

    news_commands = commands.add_parser("news", help="the school news").add_subparsers(
        title="news commands", required=True, metavar="COMMAND"
    )
    p = command(
        "post",
        _news_post,
        "post an HTML file into the school news as a teacher's or staff member's article "
        "(copied into every class's news), once per key, and pin it if asked",
        within=news_commands,
        full_name="news post",
    )
    p.add_argument("file", metavar="FILE.html", type=Path, help="the article (UTF-8 HTML)")
    p.add_argument(
        "--author", required=True, metavar="PERSON", help="the author's sourcedId in the roster"
    )
    p.add_argument("--title", help="the article's heading, if the file does not open with it")
    p.add_argument(
        "--pin", action="store_true", help="pin it in the school news (the author must be staff)"
    )
    p.add_argument(
        "--key",
        help="what makes posting it again a no-op (default: the file's name without .html)",
    )
    p.add_argument(
        "--school", metavar="ORGID", help="the school, if the author belongs to more than one"
    )

    diary_commands = commands.add_parser("diary", help="the diary bridge").add_subparsers(
        title="diary commands", required=True, metavar="COMMAND"
    )
    command(
        "sync",
        _diary_sync,
        "sync the diary into the rooms now and show what changed",
        within=diary_commands,
        full_name="diary sync",
    )
    return parser
