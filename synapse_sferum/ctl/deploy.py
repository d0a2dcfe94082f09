"""`sferumctl init`: fills a deployment folder, and re-renders its config on later runs.

What a server cannot lose (secrets, the signing key, the database, media) is created once and then
only ever read. What `init` renders (homeserver.yaml, log.config, appservice-sferum.yaml,
prometheus.yml, grafana-dashboard.json, and bridge.yaml, turnserver.conf and sfu.yaml when asked
for) is written again on each run, and a previous copy that differs is kept as a timestamped
backup, so a hand edit is never lost either.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jinja2
import signedjson.key
import yaml

from sferum_shared import SYSTEM_CLOCK
from sferum_shared.settings import comment
from synapse_sferum.config import (
    AccountsConfig,
    LinkCodesConfig,
    MediaConfig,
    PhoneConfig,
    ProvisioningConfig,
    ReportsConfig,
    RulesConfig,
    SferumConfig,
)
from synapse_sferum.ctl.deployment import (
    SECRET_NAMES,
    SFERUM_MODULE,
    Deployment,
    read_yaml_mapping,
)
from synapse_sferum.ctl.errors import CtlError
from synapse_sferum.ctl.monitoring import render_dashboard, render_prometheus_config
from synapse_sferum.ctl.params import SFU_FOCUS_TYPE, InitParams
from synapse_sferum.ctl.settings import Settings, resolve
from synapse_sferum.ctl.workers import FEDERATION_PORT_REST, ROUTES, federation_port_routes
from synapse_sferum.msisdn_path import msisdn_delegate_base
from synapse_sferum.policy.quiet import QuietHoursConfig

BOT_LOCALPART = str(attrs.fields(SferumConfig).bot_localpart.default)

PRIVATE = 0o600  # files holding secrets, or a database password
PUBLIC = 0o644

_SECRETS_HEADER = """\
# Secrets of this deployment, generated once by `sferumctl init`, which never replaces them.
# homeserver.yaml and appservice-sferum.yaml are rendered from these values.
"""
_INIT_HEADER = """\
# The parameters given to `sferumctl init`; a later init without them keeps these values.
"""


def init(deployment: Deployment, given: InitParams) -> list[str]:
    """Creates or updates the deployment; returns one report line per file."""
    if deployment.root.exists() and not deployment.root.is_dir():
        raise CtlError(f"{deployment.root} exists and is not a folder")
    stored = _stored_params(deployment)
    params = given.over(stored)
    _refuse_rename(deployment, stored, params)
    try:
        settings = resolve(params, deployment.sqlite_database)
    except ValueError as e:
        raise CtlError(str(e)) from None

    old_secrets = deployment.load_secrets()
    all_secrets = {name: old_secrets.get(name) or _new_secret() for name in SECRET_NAMES}
    # Render everything before writing anything, so a template error leaves the folder as it was.
    rendered = _render(deployment, settings, all_secrets)

    subfolders = (deployment.conf_d, deployment.media_store, deployment.logs, deployment.run)
    report = [_line("kept" if deployment.root.is_dir() else "created", f"{deployment.root}/")]
    report += [_line("kept" if f.is_dir() else "created", f"{f.name}/") for f in subfolders]
    for folder in (deployment.root, *subfolders):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    added = [name for name in SECRET_NAMES if name not in old_secrets]
    if added:
        dump = yaml.safe_dump(all_secrets, sort_keys=False)
        _write(deployment.secrets_file, _SECRETS_HEADER + dump, PRIVATE)
        report.append(
            _line(
                "created" if not old_secrets else "added",
                f"{deployment.secrets_file.name} ({', '.join(added)})",
            )
        )
    else:
        report.append(_line("kept", deployment.secrets_file.name))

    key_path = deployment.signing_key(settings.server_name)
    if key_path.exists():
        report.append(_line("kept", key_path.name))
    else:
        _write(key_path, _new_signing_key(), PRIVATE)
        report.append(_line("created", key_path.name))

    if deployment.sqlite_database.exists():
        report.append(_line("kept", deployment.sqlite_database.name))
    if settings.topology is not None:
        deployment.workers_dir.mkdir(mode=0o700, exist_ok=True)
    for path, (text, mode) in rendered.items():
        report.append(_render_to(path, text, mode))
    # Fewer edges or workers than before, or none: stop running those.
    stale = [
        *deployment.sfu_edge_configs(),
        *deployment.worker_files(),
        deployment.nginx_config,
        deployment.redis_config,
    ]
    for path in stale:
        if path.exists() and path not in rendered:
            path.unlink()
            report.append(_line("removed", str(path.relative_to(deployment.root))))
    # No backup of the parameters: the new file carries every older value not replaced now.
    init_yaml = yaml.safe_dump(params.to_yaml(), sort_keys=False, allow_unicode=True)
    report.append(
        _render_to(deployment.init_file, _INIT_HEADER + init_yaml, PRIVATE, backup=False)
    )
    return report


def _line(verb: str, what: str) -> str:
    return f"{verb:<9} {what}"


def _stored_params(deployment: Deployment) -> InitParams:
    try:
        return InitParams.from_mapping(read_yaml_mapping(deployment.init_file) or {})
    except ValueError as e:
        raise CtlError(f"{deployment.init_file}: {e}") from None


def _refuse_rename(deployment: Deployment, stored: InitParams, params: InitParams) -> None:
    """Synapse cannot rename a server: its name is in every stored event and user ID."""
    if stored.server_name in (None, params.server_name):
        return
    if deployment.sqlite_database.exists():
        where = f"its database {deployment.sqlite_database}"
    elif stored.database not in (None, "sqlite"):
        where = "its PostgreSQL database"
    else:
        return
    raise CtlError(
        f"{deployment.root} already serves {stored.server_name!r}, and {where} may hold that "
        f"server's rooms and users. Synapse cannot rename a server: use a new folder (and a new "
        f"database) for {params.server_name!r}."
    )


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _new_signing_key() -> str:
    """A new ed25519 key in Synapse's format, with a version like Synapse's own (a_XXXX)."""
    version = "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))
    key = signedjson.key.generate_signing_key(version)
    return f"{key.alg} {key.version} {signedjson.key.encode_signing_key_base64(key)}\n"


def _yaml_scalar(value: Any) -> str:
    """A YAML value as JSON (which is valid YAML) so no name or password can break the file."""
    return json.dumps(value, ensure_ascii=False, default=_path_to_str)


def _path_to_str(value: object) -> str:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot render {type(value).__name__} {value!r} as YAML")


def template_loader() -> jinja2.BaseLoader:
    """sferumctl's templates (synapse_sferum/templates/), read from the installed package, so
    an install from a wheel renders the same files as a checkout."""
    return jinja2.PackageLoader("synapse_sferum", "templates")


def text_environment() -> jinja2.Environment:
    """The package's templates, rendered as plain text (config files, units): an undefined name
    is an error, not an empty string."""
    return jinja2.Environment(
        loader=template_loader(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _environment() -> jinja2.Environment:
    env = text_environment()
    env.filters["yaml"] = _yaml_scalar
    # A key's comment, from its declaration (`sferum_shared.settings`): written once, there.
    env.globals["explain"] = lambda section, key, indent: comment(type(section), key, indent)
    return env


def _render(
    deployment: Deployment, settings: Settings, all_secrets: Mapping[str, str]
) -> dict[Path, tuple[str, int]]:
    env = _environment()
    context = {
        "d": deployment,
        "s": settings,
        "secrets": all_secrets,
        "module": SFERUM_MODULE,
        "bot_localpart": BOT_LOCALPART,
        "school_timezone": attrs.fields(SferumConfig).timezone.default,
        "bot_user_regex": f"^{re.escape(f'@{BOT_LOCALPART}:{settings.server_name}')}$",
        "rules": RulesConfig(),
        "provisioning": ProvisioningConfig(),
        "phone": PhoneConfig(),
        "link_codes": LinkCodesConfig(),
        "accounts": AccountsConfig(),
        "quiet_hours": QuietHoursConfig(),
        "media": MediaConfig(),
        "reports": ReportsConfig(),
        "sfu_focus_type": SFU_FOCUS_TYPE,
        "edge": None,  # an edge's port and URLs when rendering its sfu-edge-N.yaml
        "worker": None,  # a worker's name when rendering its log config
        "routes": ROUTES,
        "federation_routes": federation_port_routes(),
        "federation_rest": FEDERATION_PORT_REST,
        "msisdn_delegate": settings.local_client_url
        + msisdn_delegate_base(all_secrets["admin_api_secret"]),
    }
    templates = [
        (deployment.homeserver_config, "homeserver.yaml.j2", PRIVATE),
        (deployment.log_config, "log.config.j2", PUBLIC),
        (deployment.appservice_config, "appservice.yaml.j2", PRIVATE),
    ]
    if settings.diary_sources:
        templates.append((deployment.bridge_config, "bridge.yaml.j2", PRIVATE))
    if settings.turn_port is not None:
        templates.append((deployment.turn_config, "turnserver.conf.j2", PRIVATE))
    if settings.sfu_port is not None:
        templates.append((deployment.sfu_config, "sfu.yaml.j2", PRIVATE))
    rendered = {
        path: (env.get_template(template).render(context), mode)
        for path, template, mode in templates
    }
    prometheus_yml = deployment.prometheus_config
    rendered[prometheus_yml] = (render_prometheus_config(settings, str(prometheus_yml)), PUBLIC)
    rendered[deployment.grafana_dashboard] = (render_dashboard(settings), PUBLIC)
    origin = f"ws://127.0.0.1:{settings.sfu_port}/ws"  # edges reach the origin on this host
    for number, (port, url) in enumerate(
        zip(settings.sfu_edge_ports, settings.sfu_edge_urls, strict=True), 1
    ):
        edge = {"port": port, "url": url, "origin_url": origin}
        text = env.get_template("sfu.yaml.j2").render({**context, "edge": edge})
        rendered[deployment.sfu_edge_config(number)] = (text, PRIVATE)
    if settings.topology is not None:
        for path, template in (
            (deployment.nginx_config, "nginx.conf.j2"),
            (deployment.redis_config, "redis.conf.j2"),
        ):
            rendered[path] = (env.get_template(template).render(context), PUBLIC)
        log_template, worker_template = (env.get_template(t) for t in _WORKER_TEMPLATES)
        for process in settings.topology.workers:
            ours = {**context, "p": process, "worker": process.name}
            rendered[deployment.worker_config(process.name)] = (
                worker_template.render(ours),
                PUBLIC,
            )
            rendered[deployment.worker_log_config(process.name)] = (
                log_template.render(ours),
                PUBLIC,
            )
    return rendered


_WORKER_TEMPLATES = ("log.config.j2", "worker.yaml.j2")


def _render_to(path: Path, text: str, mode: int, *, backup: bool = True) -> str:
    """Writes a rendered file, keeping a differing previous copy; returns the report line."""
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _write(path, text, mode)
        return _line("created", path.name)
    if old == text:
        return _line("unchanged", path.name)
    if not backup:
        _write(path, text, mode)
        return _line("updated", path.name)
    stamp = SYSTEM_CLOCK.now().astimezone().strftime("%Y%m%dT%H%M%S")
    names = (f"{path.name}.{stamp}{f'-{n}' if n else ''}.bak" for n in itertools.count())
    copy = next(b for b in map(path.with_name, names) if not b.exists())
    os.link(path, copy)  # the old file itself, its mode included
    _write(path, text, mode)
    return _line("updated", f"{path.name} (previous copy: {copy.name})")


def _write(path: Path, text: str, mode: int) -> None:
    """Replaces `path` atomically: readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w", encoding="utf-8"
        ) as f:
            os.fchmod(f.fileno(), mode)  # O_CREAT's mode is masked by the umask
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
