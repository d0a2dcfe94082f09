"""A deployment folder: where each file lives, and reading back what `init` wrote there."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from synapse_sferum.ctl.errors import CtlError

# The `modules:` entry of the platform in homeserver.yaml.
SFERUM_MODULE = "synapse_sferum.SferumModule"

# Every secret of a deployment, generated once by `init` and kept in secrets.yaml.
SECRET_NAMES = (
    "registration_shared_secret",
    "macaroon_secret_key",
    "form_secret",
    "admin_api_secret",
    "as_token",
    "hs_token",
    "diary_control_secret",
    "diary_push_secret",
    "diary_ical_secret",
    "turn_shared_secret",  # coturn's static-auth-secret; Synapse derives call credentials from it
    "sfu_jwt_secret",  # HS256 key of the SFU's access tokens (issued and checked by the SFU only)
    "worker_replication_secret",  # Synapse's processes' HTTP replication calls (`--workers`)
    "redis_password",  # the workers' Redis (`--workers`)
)


def read_yaml(path: Path) -> Any:
    """The YAML document in `path`, or None if there is no such file."""
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        return None
    except yaml.YAMLError as e:
        raise CtlError(f"{path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CtlError(f"{path}: cannot read: {e}") from None


def read_yaml_mapping(path: Path) -> dict[str, Any] | None:
    data = read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise CtlError(
            f"{path}: must be a YAML mapping (key: value lines), got a {type(data).__name__}"
        )
    return data


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(path).absolute()


@attrs.frozen
class Deployment:
    """The folder that `sferumctl init DIR` fills, and every other command reads."""

    root: Path = attrs.field(converter=_absolute)

    @property
    def homeserver_config(self) -> Path:
        return self.root / "homeserver.yaml"

    @property
    def log_config(self) -> Path:
        return self.root / "log.config"

    @property
    def prometheus_config(self) -> Path:
        """Prometheus's scrape config: every process of the deployment that serves metrics."""
        return self.root / "prometheus.yml"

    @property
    def grafana_dashboard(self) -> Path:
        return self.root / "grafana-dashboard.json"

    @property
    def appservice_config(self) -> Path:
        return self.root / "appservice-sferum.yaml"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.yaml"

    @property
    def init_file(self) -> Path:
        return self.root / "sferum-init.yaml"

    @property
    def conf_d(self) -> Path:
        return self.root / "conf.d"

    @property
    def media_store(self) -> Path:
        return self.root / "media_store"

    @property
    def bridge_config(self) -> Path:
        """The diary bridge's config; present only when `init` was given diary sources."""
        return self.root / "bridge.yaml"

    @property
    def sfu_config(self) -> Path:
        """The SFU's config; present only when `init` was given --sfu-port."""
        return self.root / "sfu.yaml"

    def sfu_edge_config(self, number: int) -> Path:
        """Edge `number`'s config (from 1); present only when `init` was given --sfu-edges."""
        return self.root / f"sfu-edge-{number}.yaml"

    def sfu_edge_configs(self) -> list[Path]:
        """The edges' configs that exist, in order."""
        found = self.root.glob("sfu-edge-*.yaml")
        return sorted(found, key=lambda path: int(path.stem.rpartition("-")[2] or 0))

    @property
    def workers_dir(self) -> Path:
        """The workers' own configs (`init --workers`)."""
        return self.root / "workers"

    def worker_config(self, name: str) -> Path:
        return self.workers_dir / f"{name}.yaml"

    def worker_log_config(self, name: str) -> Path:
        return self.workers_dir / f"{name}.log.config"

    def worker_files(self) -> list[Path]:
        """The workers' configs and log configs that exist."""
        return sorted(self.workers_dir.glob("*.yaml")) + sorted(
            self.workers_dir.glob("*.log.config")
        )

    @property
    def redis_config(self) -> Path:
        """Redis for the workers' replication; present only with `init --workers`."""
        return self.root / "redis.conf"

    @property
    def nginx_config(self) -> Path:
        """nginx in front of the workers; present only with `init --workers`."""
        return self.root / "nginx.conf"

    @property
    def turn_config(self) -> Path:
        """coturn's config; present only when `init` was given --turn-port."""
        return self.root / "turnserver.conf"

    @property
    def diary_database(self) -> Path:
        return self.root / "diary.db"

    @property
    def sms_outbox(self) -> Path:
        """The `file` SMS gateway's outbox: one JSON line per message sent."""
        return self.root / "sms-outbox.jsonl"

    @property
    def sqlite_database(self) -> Path:
        return self.root / "homeserver.db"

    @property
    def daemon_pid_file(self) -> Path:
        """Synapse's own `pid_file`, written only if it daemonizes itself (we never ask it to)."""
        return self.root / "homeserver.pid"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def signing_key(self, server_name: str) -> Path:
        return self.root / f"{server_name}.signing.key"

    def config_files(self) -> list[Path]:
        """homeserver.yaml, then conf.d/*.yaml by name: the `-c` files Synapse is started with."""
        if not self.homeserver_config.is_file():
            raise CtlError(
                f"{self.root} is not a deployment (no homeserver.yaml); "
                f"create it with: sferumctl init {self.root} --server-name NAME"
            )
        return [self.homeserver_config, *sorted(self.conf_d.glob("*.yaml"))]

    def load_config(self) -> dict[str, Any]:
        """The config Synapse will see: later files replace earlier top-level keys whole."""
        merged: dict[str, Any] = {}
        for path in self.config_files():
            merged.update(read_yaml_mapping(path) or {})
        return merged

    def load_secrets(self) -> dict[str, str]:
        """The stored secrets (none if secrets.yaml does not exist yet)."""
        secrets = read_yaml_mapping(self.secrets_file) or {}
        for name, value in secrets.items():
            if name not in SECRET_NAMES:
                raise CtlError(
                    f"{self.secrets_file}: {name}: unknown secret; the secrets are "
                    f"{', '.join(SECRET_NAMES)}"
                )
            if not isinstance(value, str) or not value:
                raise CtlError(f"{self.secrets_file}: {name}: must be a non-empty string")
        return secrets

    def admin_api_secret(self) -> str:
        secret = self.load_secrets().get("admin_api_secret")
        if secret is None:
            raise CtlError(
                f"{self.secrets_file} has no admin_api_secret; run: sferumctl init {self.root}"
            )
        return secret


def client_base_url(config: Mapping[str, Any]) -> str:
    """http://host:port of the first plain-HTTP listener serving the client API."""
    for listener in config.get("listeners") or []:
        if not isinstance(listener, Mapping) or listener.get("type") != "http":
            continue
        if listener.get("tls") or "port" not in listener:
            continue
        resources = [r for r in listener.get("resources") or [] if isinstance(r, Mapping)]
        if not any("client" in (r.get("names") or []) for r in resources):
            continue
        addresses = list(listener.get("bind_addresses") or [])
        if listener.get("bind_address"):
            addresses.append(listener["bind_address"])
        return f"http://{_connectable_host(addresses)}:{listener['port']}"
    raise CtlError(
        "the config has no listener with `type: http`, `tls: false` and the "
        "`client` resource, so there is no URL to reach the server at"
    )


def local_base_url(deployment: Deployment, config: Mapping[str, Any]) -> str:
    """Where sferumctl reaches the client API: nginx when Synapse runs as workers (it sends the
    module's admin API to the background worker, media to the media worker), else main."""
    if deployment.nginx_config.exists():
        base = proxy_base_url(deployment.nginx_config)
        if base is None:
            raise CtlError(f"{deployment.nginx_config}: no `listen ADDR:PORT;` line")
        return base
    return client_base_url(config)


def proxy_base_url(nginx_config: Path) -> str | None:
    """http://ADDR:PORT of the first plain `listen` in our nginx.conf; None if unreadable."""
    try:
        lines = nginx_config.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        words = line.split("#", 1)[0].strip().rstrip(";").split()
        if len(words) == 2 and words[0] == "listen":
            return f"http://{words[1]}"
    return None


def public_base_url(config: Mapping[str, Any]) -> str:
    """Where people reach the server: Synapse's `public_baseurl`, or its client listener."""
    public = config.get("public_baseurl")
    if isinstance(public, str) and public:
        return public.rstrip("/")
    return client_base_url(config)


def _connectable_host(bind_addresses: list[str]) -> str:
    """A host to connect to for a listener bound to these addresses (Synapse's default: all)."""
    try:
        ips = [ipaddress.ip_address(a) for a in bind_addresses or ["::", "0.0.0.0"]]
    except ValueError as e:
        raise CtlError(f"listeners: bind_addresses: {e}") from None
    ip = next((ip for ip in ips if ip.version == 4), ips[0])
    if ip.is_unspecified:
        ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    return str(ip) if ip.version == 4 else f"[{ip}]"
