"""`sferumctl systemd DIR`: systemd units for a deployment's services, in place of the supervisor.

One `.service` per `Service` record (the same argv, environment, working folder and log as the
supervisor uses) and a `sferum-DIRNAME.target` that wants them all, rendered from
templates/systemd.*.j2. systemd then does the supervisor's job: Restart=on-failure with the
same back-off (`supervision.DEFAULT_POLICY`), never giving up. Ordering follows each record's
`after` and `requires`, and PostgreSQL's unit comes first when the database is PostgreSQL.
"""

from __future__ import annotations

import math
import pwd
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import jinja2

from synapse_sferum.ctl.deploy import template_loader
from synapse_sferum.ctl.deployment import Deployment
from synapse_sferum.ctl.services import Service, deployment_services
from synapse_sferum.ctl.supervision import DEFAULT_POLICY, RestartPolicy

# Debian's PostgreSQL unit; an After= on a unit that does not exist is harmless.
POSTGRESQL_UNIT = "postgresql.service"


def unit_prefix(folder_name: str) -> str:
    """`sferum-NAME`, NAME escaped as systemd-escape does: bytes outside [A-Za-z0-9:_.-] (and a
    leading dot) become \\xNN, so every folder name gives a valid, distinct unit name."""
    escaped = "".join(
        chr(byte)
        if chr(byte).isascii()
        and (chr(byte).isalnum() or chr(byte) in ":_-.")
        and not (index == 0 and byte == ord("."))
        else f"\\x{byte:02x}"
        for index, byte in enumerate(folder_name.encode())
    )
    return f"sferum-{escaped}"


def systemd_word(value: str) -> str:
    """One ExecStart= argument or Environment= assignment, quoted for systemd's own parser:
    `%` specifiers and `$` variables are taken literally."""
    escaped = value.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_path(value: Path | str) -> str:
    """A path for WorkingDirectory= or StandardOutput=append:, where only `%` is special."""
    return str(value).replace("%", "%%")


def restart_steps(policy: RestartPolicy) -> int:
    """RestartSteps= for a delay doubling from `first_delay` to `max_delay`."""
    return max(math.ceil(math.log2(policy.max_delay / policy.first_delay)), 0)


def render_units(
    root: Path,
    services: Sequence[Service],
    *,
    user: str,
    system_after: Sequence[str] = (),
    policy: RestartPolicy = DEFAULT_POLICY,
) -> dict[str, str]:
    """File name → text: a unit per service and the target that groups them."""
    env = jinja2.Environment(
        loader=template_loader(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        systemd_word=systemd_word,
        systemd_path=systemd_path,
        round_seconds=lambda seconds: f"{seconds:g}",
    )
    prefix = unit_prefix(root.name)
    target = f"{prefix}.target"
    names = {s.name for s in services}

    def unit(name: str) -> str:
        return f"{prefix}-{name}.service"

    units: dict[str, str] = {}
    for service in services:
        unknown = (set(service.after) | set(service.requires)) - names
        if unknown:
            raise ValueError(f"{service.name} names services that do not exist: {sorted(unknown)}")
        wants = [unit(name) for name in service.after]
        requires = [unit(name) for name in service.requires]
        units[unit(service.name)] = env.get_template("systemd.service.j2").render(
            root=systemd_path(root),
            name=service.name,
            target=target,
            after=[*system_after, *wants, *requires],
            wants=wants,
            requires=requires,
            user=user,
            cwd=service.cwd,
            env=service.env,
            argv=service.argv,
            sd_notify=service.sd_notify,
            policy=policy,
            restart_steps=restart_steps(policy),
            stop_seconds=service.stop_grace,
            log=service.log_path,
        )
    units[target] = env.get_template("systemd.target.j2").render(
        root=systemd_path(root), target=target, units=[unit(s.name) for s in services]
    )
    return units


def write_units(
    deployment: Deployment, config: Mapping[str, Any], out: Path, *, user: str | None
) -> list[str]:
    """Writes the units of `deployment` into `out`; returns what to tell the admin."""
    services = [
        # systemd wants an absolute ExecStart path; a system binary (turnserver) is looked up.
        attrs.evolve(s, argv=(shutil.which(s.argv[0]) or s.argv[0], *s.argv[1:]))
        for s in deployment_services(deployment, config)
    ]
    database = config.get("database") or {}
    postgres = isinstance(database, Mapping) and database.get("name") == "psycopg2"
    units = render_units(
        deployment.root,
        services,
        user=user or pwd.getpwuid(deployment.root.stat().st_uid).pw_name,
        system_after=[POSTGRESQL_UNIT] if postgres else [],
    )
    out.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (out / name).write_text(text, encoding="utf-8")
    target = next(name for name in units if name.endswith(".target"))
    return [
        *(f"wrote {out / name}" for name in units),
        f"next: sferumctl stop {deployment.root}  (not both the supervisor and systemd)",
        f"      cp {out}/* /etc/systemd/system/ && systemctl daemon-reload",
        f"      systemctl enable --now {target}",
    ]
