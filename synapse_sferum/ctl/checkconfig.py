"""`sferumctl check-config`: the config Synapse will run with, checked as Synapse checks it.

Our own parser runs first, so a mistake in the module's section gets its precise message
(`modules[synapse_sferum].config.rules.min_account_age_years: ...`) rather than Synapse's
generic "failed to parse config for module".
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sferum_shared.config import ConfigError
from synapse_sferum.config import parse_config
from synapse_sferum.ctl.deployment import SFERUM_MODULE, Deployment
from synapse_sferum.ctl.errors import CtlError

if TYPE_CHECKING:
    from synapse.config.homeserver import HomeServerConfig


def check_config(deployment: Deployment) -> dict[str, Any]:
    """The merged config of the deployment, once both the module and Synapse accept it."""
    config = deployment.load_config()
    try:
        parse_config(_module_config(config))
    except ConfigError as e:
        raise CtlError(str(e)) from None
    _load_with_synapse(deployment)
    return config


def _module_config(config: Mapping[str, Any]) -> Any:
    modules = config.get("modules") or []
    if not isinstance(modules, list):
        raise CtlError(f"modules: must be a list, got {modules!r}")
    entries = [m for m in modules if isinstance(m, Mapping) and m.get("module") == SFERUM_MODULE]
    if not entries:
        raise CtlError(
            f"modules: no entry `- module: {SFERUM_MODULE}`; without it "
            "nothing enforces the school's rules"
        )
    if len(entries) > 1:
        raise CtlError(f"modules: {SFERUM_MODULE} is listed {len(entries)} times; keep one")
    return entries[0].get("config")


def _load_with_synapse(deployment: Deployment) -> None:
    """Runs Synapse's own config loader on the same `-c` files `start` will pass: main's, then
    each worker's (`init --workers`), whose errors name its file.

    Application service files are only read when Synapse starts, so they are loaded here too.
    """
    shared = [arg for path in deployment.config_files() for arg in ("-c", str(path))]
    config = _synapse_config(deployment.root, shared)
    for worker in sorted(deployment.workers_dir.glob("*.yaml")):
        try:
            _synapse_config(deployment.root, [*shared, "-c", str(worker)])
        except CtlError as e:
            raise CtlError(f"{worker}: {e}", details=e.details) from None

    from synapse.config.appservice import load_appservices

    files = config.appservice.app_service_config_files
    logging.disable(logging.CRITICAL)  # Synapse logs a traceback before it raises; we explain
    try:
        load_appservices(config.server.server_name, files)
    except Exception as e:  # Synapse raises ConfigError, KeyError, ValueError, OSError...
        raise CtlError(f"app_service_config_files: {', '.join(files)}: {e}") from None
    finally:
        logging.disable(logging.NOTSET)


def _synapse_config(root: Path, argv: list[str]) -> HomeServerConfig:
    from synapse.config._base import ConfigError, format_config_error
    from synapse.config.homeserver import HomeServerConfig

    try:
        with contextlib.chdir(root):  # relative paths mean what they will at start
            return HomeServerConfig.load_config("sferumctl check-config", argv)
    except ConfigError as e:
        raise CtlError("".join(format_config_error(e))) from None
    except ImportError as e:
        raise CtlError(f"modules: cannot import a listed module: {e}") from None
    except Exception as e:  # a value of the wrong type, which Synapse does not check first
        raise CtlError(
            f"Synapse cannot read the config: {type(e).__name__}: {e} (in {_synapse_frame(e)})"
        ) from None


def _synapse_frame(error: Exception) -> str:
    """Where in Synapse's config code `error` was raised; the file names the config section."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    path = Path(frame.filename)
    parts = path.parts[path.parts.index("synapse") :] if "synapse" in path.parts else (path.name,)
    return f"{'/'.join(parts)}:{frame.lineno}"
