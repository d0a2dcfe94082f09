"""Monitoring end to end: a real Prometheus (Debian's) runs the prometheus.yml that `init`
wrote, scrapes every process of a small deployment (Synapse, the diary bridge, the SFU and an
edge), and answers every query of grafana-dashboard.json.

The test changes only the scrape interval of prometheus.yml (1 s instead of 15 s), so a rate
has two samples within seconds. Logs: the module's lines in homeserver.log, and the bridge's
and the SFU's, are JSON objects, one a line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_sferum.ctl.monitoring import Query, dashboard_queries
from tests.integration.harness import (
    Deployment,
    free_port,
    free_ports,
    sferumctl,
    stop_process,
)

pytestmark = pytest.mark.integration

SERVER = "monitor.test"
DEADLINE_SECONDS = 20.0


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("monitoring")
    deployment = Deployment(root / SERVER, SERVER)
    deployment.extra_init = (
        *("--sfu-port", str(free_ports(2)), "--sfu-edges", "1"),  # the edge takes the next
        *("--diary-source", "push", "--diary-port", str(free_port())),
    )
    deployment.init()
    sferumctl("start", str(deployment.dir))  # healthy is enough: no user directory needed
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def prometheus(deployment: Deployment) -> Iterator[str]:
    """Prometheus on the deployment's own prometheus.yml; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus; scripts/test does)")
    config = yaml.safe_load((deployment.dir / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    work = deployment.dir.parent / "prometheus"
    work.mkdir()
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield url
    finally:
        stop_process(process)
        log.close()


def _targets(url: str) -> list[dict[str, Any]]:
    try:
        active: list[dict[str, Any]] = _get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    except (urllib.error.URLError, OSError):
        return []
    return active


def _query(url: str, expr: str) -> dict[str, Any]:
    """Prometheus's answer to an instant query; it must be a success whatever the data."""
    try:
        answer: dict[str, Any] = _get_json(
            f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        )
    except urllib.error.HTTPError as e:  # 400 for a query that does not parse, with the error
        raise AssertionError(f"{expr}: {e.code} {e.read().decode(errors='replace')}") from None
    assert answer["status"] == "success", (expr, answer)
    assert answer["data"]["resultType"] == "vector", (expr, answer)
    return answer


def _stir(deployment: Deployment, sfu_url: str) -> None:
    """Work for the panels that count it: client requests, a reconcile, a refused call token."""
    for _ in range(3):
        urllib.request.urlopen(f"{deployment.base_url}/_matrix/client/versions", timeout=5).close()
    report = deployment.reconcile()
    assert report["failures"] == 0, report
    request = urllib.request.Request(
        f"{sfu_url}/sfu/get", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)


def test_prometheus_scrapes_every_process_and_answers_every_dashboard_query(
    deployment: Deployment, prometheus: str
) -> None:
    scrape = yaml.safe_load((deployment.dir / "prometheus.yml").read_text())
    processes = {
        target["labels"]["process"]
        for job in scrape["scrape_configs"]
        for target in job["static_configs"]
    }
    assert processes == {"synapse", "diary-bridge", "sfu", "sfu-edge-1"}
    sfu_url = f"http://{scrape['scrape_configs'][2]['static_configs'][0]['targets'][0]}"
    _stir(deployment, sfu_url)

    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        targets = _targets(prometheus)
        up = {t["labels"]["process"] for t in targets if t["health"] == "up"}
        if up == processes:
            break
        log = deployment.dir.parent / "prometheus" / "prometheus.log"
        assert time.monotonic() < deadline, (targets, log.read_text(errors="replace")[-3000:])
        time.sleep(0.25)

    # Those a fresh deployment has data for, and the refusal `_stir` caused.
    must_have_data: list[Query] = [q for q in dashboard_queries() if q.always]
    must_have_data += [q for q in dashboard_queries() if "sfu_auth_refusals" in q.expr]
    empty: list[str] = []
    while True:
        answers = {q.expr: _query(prometheus, q.expr) for q in dashboard_queries()}
        empty = [q.expr for q in must_have_data if not answers[q.expr]["data"]["result"]]
        if not empty:
            break
        assert time.monotonic() < deadline, f"no data for: {empty}"
        time.sleep(0.5)

    memory = answers["process_resident_memory_bytes"]["data"]["result"]
    assert {series["metric"]["process"] for series in memory} == processes
    refusals = answers["sum by (reason) (rate(sfu_auth_refusals_total[5m]))"]["data"]["result"]
    assert {series["metric"]["reason"] for series in refusals} == {"M_BAD_JSON"}, refusals


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines; sferumctl's own `--- … start` lines in *.out are not logs."""
    lines = path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.parametrize(
    ("log", "logger", "message"),
    [
        ("homeserver.log", "synapse_sferum.provisioner", "synapse_sferum: reconcile done: "),
        ("diary-bridge.out", "bridges.diary", "diary: sync done: "),
        # aiohttp's access log: each request, with its fields as context.
        ("sfu.out", "aiohttp.access", ""),
    ],
)
def test_our_processes_log_json_lines(
    deployment: Deployment, log: str, logger: str, message: str
) -> None:
    path = deployment.dir / "logs" / log
    text = path.read_text(errors="replace")
    events = _json_lines(path)
    assert events and len(events) == len([line for line in text.splitlines() if line[:1] == "{"])
    for event in events:
        assert {"time", "level", "logger", "message"} <= event.keys(), event
    ours = [e for e in events if e["logger"] == logger and e["message"].startswith(message)]
    assert ours, (logger, message, text[-2000:])
    if log == "homeserver.log":  # Synapse's log context rides along
        assert ours[-1]["server_name"] == SERVER and "request" in ours[-1], ours[-1]
    if log == "sfu.out":
        assert any(e.get("first_request_line") == "GET /health HTTP/1.1" for e in ours)
