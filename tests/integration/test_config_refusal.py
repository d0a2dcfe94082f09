"""A bad module config stops both `sferumctl check-config` and Synapse itself, with one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import Deployment, sferumctl

pytestmark = pytest.mark.integration

MESSAGE = "modules[synapse_sferum].config.rules.min_account_age_years: must be a whole number"


def test_bad_module_config_is_refused_by_check_config_and_by_synapse(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path / "hs", "school.test")
    deployment.init()
    config = yaml.safe_load((deployment.dir / "homeserver.yaml").read_text())
    [module] = config["modules"]
    module["config"]["rules"]["min_account_age_years"] = 40
    (deployment.dir / "conf.d" / "90-bad.yaml").write_text(
        yaml.safe_dump({"modules": config["modules"]})
    )

    checked = sferumctl("check-config", str(deployment.dir), check=False)
    assert checked.returncode == 1
    assert MESSAGE in checked.stderr + checked.stdout

    started = sferumctl("start", str(deployment.dir), check=False)
    assert started.returncode != 0
    assert MESSAGE in started.stderr + started.stdout

    # Synapse on its own, without sferumctl in front, refuses with the same words.
    synapse = subprocess.run(
        [
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(deployment.dir / "homeserver.yaml"),
            "-c",
            str(deployment.dir / "conf.d" / "90-bad.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synapse.returncode != 0
    assert MESSAGE in synapse.stderr + synapse.stdout
