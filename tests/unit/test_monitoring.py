"""Monitoring: the scrape targets, prometheus.yml, the Grafana dashboard, JSON log lines, and
the metrics' own small decisions."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from prometheus_client import REGISTRY

import sferum_shared.logs
from bridges.diary import metrics as diary_metrics
from bridges.diary.config import parse_config as parse_bridge_config
from sferum_shared.config import ConfigError
from sferum_shared.logs import JsonLineFormatter, log_event
from sfu.config import parse_config as parse_sfu_config
from synapse_sferum import metrics as module_metrics
from synapse_sferum.ctl import monitoring
from synapse_sferum.ctl.main import main
from synapse_sferum.ctl.monitoring import MetricsEndpoint
from synapse_sferum.ctl.params import InitParams
from synapse_sferum.ctl.settings import resolve

SERVER = "school1.example.org"


def settings(**given: Any) -> Any:
    return resolve(InitParams(server_name=SERVER, **given), Path("/srv/hs.db"))


SYNAPSE = MetricsEndpoint("synapse", "synapse", "127.0.0.1:9000", "/_synapse/metrics")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, [SYNAPSE]),
        (
            {"metrics_port": 9100, "metrics_bind": "0.0.0.0"},
            [attrs.evolve(SYNAPSE, address="127.0.0.1:9100")],
        ),
        (
            {"metrics_bind": "::1", "diary_sources": ("push",), "diary_port": 8019},
            [
                attrs.evolve(SYNAPSE, address="[::1]:9000"),
                MetricsEndpoint("diary-bridge", "diary-bridge", "127.0.0.1:8019"),
            ],
        ),
        (
            {"sfu_port": 8100, "sfu_edges": 2, "bind": "0.0.0.0", "public_baseurl": "https://s/"},
            [
                SYNAPSE,
                MetricsEndpoint("sfu", "sfu", "127.0.0.1:8100"),
                MetricsEndpoint("sfu", "sfu-edge-1", "127.0.0.1:8101"),
                MetricsEndpoint("sfu", "sfu-edge-2", "127.0.0.1:8102"),
            ],
        ),
    ],
)
def test_every_process_with_metrics_is_a_target(
    given: dict[str, Any], expected: list[MetricsEndpoint]
) -> None:
    assert list(monitoring.metrics_endpoints(settings(**given))) == expected


def test_a_worker_joins_the_synapse_job_by_one_more_record() -> None:
    endpoints = monitoring.metrics_endpoints(settings(sfu_port=8100))
    worker = MetricsEndpoint("synapse", "worker1", "127.0.0.1:9101", "/_synapse/metrics")
    config = monitoring.prometheus_config([*endpoints, worker], scrape_interval="5s")
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    synapse, sfu = config["scrape_configs"]
    assert synapse == {
        "job_name": "synapse",
        "metrics_path": "/_synapse/metrics",
        "static_configs": [
            {"targets": ["127.0.0.1:9000"], "labels": {"process": "synapse"}},
            {"targets": ["127.0.0.1:9101"], "labels": {"process": "worker1"}},
        ],
    }
    assert sfu["job_name"] == "sfu" and sfu["metrics_path"] == "/metrics"


def test_one_job_serves_one_path() -> None:
    other = attrs.evolve(SYNAPSE, process="worker1", path="/metrics")
    with pytest.raises(ValueError, match="job synapse: its processes serve metrics at different"):
        monitoring.prometheus_config([SYNAPSE, other])


def test_init_writes_prometheus_yml_and_the_dashboard(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    args = ["--server-name", SERVER, "--metrics-port", "9300", "--sfu-port", "8100"]
    assert main(["init", str(folder), *args]) == 0
    scrape = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert [
        (job["job_name"], target["targets"], target["labels"]["process"])
        for job in scrape["scrape_configs"]
        for target in job["static_configs"]
    ] == [
        ("synapse", ["127.0.0.1:9300"], "synapse"),
        ("sfu", ["127.0.0.1:8100"], "sfu"),
    ]
    [metrics] = [
        listener
        for listener in yaml.safe_load((folder / "homeserver.yaml").read_text())["listeners"]
        if listener["type"] == "metrics"
    ]
    assert metrics["port"] == 9300

    dashboard = json.loads((folder / "grafana-dashboard.json").read_text())
    assert dashboard["title"] == f"synapse-sferum: {SERVER}"
    graphs = [panel for panel in dashboard["panels"] if panel["type"] == "timeseries"]
    exprs = [target["expr"] for panel in graphs for target in panel["targets"]]
    assert exprs == [query.expr for query in monitoring.dashboard_queries()]
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
    # No two panels overlap on Grafana's 24-column grid.
    cells = [
        (panel["gridPos"]["x"] + dx, panel["gridPos"]["y"] + dy)
        for panel in dashboard["panels"]
        for dx in range(panel["gridPos"]["w"])
        for dy in range(panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert all(x < 24 for x, _ in cells)
    titles = " ".join(panel["title"] for panel in graphs)
    for wanted in ("servlet", "persisted", "transaction", "Reactor", "Memory", "Reconcile"):
        assert wanted in titles


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "8008"], "--metrics-port must differ from --http-port (8008)"),
        (["--sfu-port", "9000"], "--sfu-port must differ from --metrics-port (9000)"),
        (
            ["--sfu-port", "8999", "--sfu-edges", "1"],
            "--sfu-edges: an edge's port 9000 is --metrics-port's",
        ),
    ],
)
def test_the_metrics_port_clashes_with_no_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["init", str(tmp_path / "d"), "--server-name", SERVER, *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-format", "xml"], "argument --log-format: must be one of json, text, got 'xml'"),
        (["--metrics-bind", "localhost"], "argument --metrics-bind: must be an IP address"),
    ],
)
def test_bad_monitoring_arguments_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit):
        main(["init", str(tmp_path / "d"), "--server-name", SERVER, *args])
    assert message in capsys.readouterr().err


def test_log_format_reaches_synapse_the_bridge_and_the_sfu(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    args = ["--server-name", SERVER, "--sfu-port", "8100", "--diary-source", "push"]
    assert main(["init", str(folder), *args]) == 0

    def formats() -> tuple[str, str, str]:
        log_config = yaml.safe_load((folder / "log.config").read_text())
        formatter = log_config["handlers"]["file"]["formatter"]
        bridge = parse_bridge_config(yaml.safe_load((folder / "bridge.yaml").read_text()))
        sfu = parse_sfu_config(yaml.safe_load((folder / "sfu.yaml").read_text()))
        assert log_config["formatters"]["json"]["class"] == "sferum_shared.logs.JsonLineFormatter"
        return formatter, bridge.log_format, sfu.log_format

    assert formats() == ("json", "json", "json")
    assert main(["init", str(folder), "--log-format", "text"]) == 0
    assert formats() == ("precise", "text", "text")


@pytest.mark.parametrize("parse", [parse_bridge_config, parse_sfu_config])
def test_a_wrong_log_format_names_the_key(parse: Any, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    args = ["--server-name", SERVER, "--sfu-port", "8100", "--diary-source", "push"]
    assert main(["init", str(folder), *args]) == 0
    name = "bridge.yaml" if parse is parse_bridge_config else "sfu.yaml"
    raw = {**yaml.safe_load((folder / name).read_text()), "log_format": "xml"}
    with pytest.raises(ConfigError, match="log_format: must be one of json, text, got 'xml'"):
        parse(raw)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "synapse_sferum.provisioner", "levelname": "INFO", "levelno": logging.INFO}
    )
    record.msg, record.args, record.created = message, args, 1_700_000_000.25
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            _record("synapse_sferum: reconcile done: %s", {"joined": 2}),
            {"message": "synapse_sferum: reconcile done: {'joined': 2}"},
        ),
        # Synapse's log context rides on every record of its process.
        (
            _record("sync", request="GET-42", server_name=SERVER),
            {"message": "sync", "request": "GET-42", "server_name": SERVER},
        ),
        # Context never replaces the line's own fields.
        (_record("hello", level="forged"), {"message": "hello"}),
    ],
)
def test_a_log_event_has_time_level_logger_message_and_context(
    record: logging.LogRecord, expected: dict[str, Any]
) -> None:
    base = {
        "time": "2023-11-14T22:13:20.250Z",
        "level": "INFO",
        "logger": "synapse_sferum.provisioner",
    }
    assert log_event(record) == {**base, **expected}


def test_context_added_by_a_record_factory_is_kept() -> None:
    """Synapse adds its log context through a record factory installed before log.config loads
    the formatter; what the factory adds must not count as a plain record's attributes."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request = "POST-7"
        return record

    logging.setLogRecordFactory(factory)
    try:
        fresh = importlib.reload(sferum_shared.logs)
        record = logging.getLogRecordFactory()("x", logging.INFO, "", 0, "hi", (), None)
        assert fresh.log_event(record)["request"] == "POST-7"
    finally:
        logging.setLogRecordFactory(previous)
        importlib.reload(sferum_shared.logs)


def test_a_json_line_keeps_the_traceback_inside_it() -> None:
    try:
        raise RuntimeError('boom "quoted"\nsecond line')
    except RuntimeError:
        record = _record("diary: sync failed", exc_info=sys.exc_info())
    record.exc_info = record.__dict__.pop("exc_info")
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "diary: sync failed"
    assert event["exception"].startswith("Traceback")
    assert 'RuntimeError: boom "quoted"\nsecond line' in event["exception"]


@pytest.mark.parametrize(
    ("report", "outcome"),
    [({"joined": 3}, "ok"), ({"joined": 3, "failures": 1}, "failed"), ({}, "ok")],
)
def test_a_reconcile_with_any_failure_counts_as_failed(
    report: dict[str, int], outcome: str
) -> None:
    assert module_metrics.reconcile_outcome(report) == outcome


def test_a_reconcile_is_counted_by_outcome_and_change() -> None:
    """In Synapse's registry (prometheus_client's default one), which its listener serves."""

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    runs = value("sferum_reconcile_runs_total", outcome="ok")
    joined = value("sferum_reconcile_changes_total", change="joined")
    module_metrics.record_reconcile({"joined": 4, "removed": 0}, 1.5)
    assert value("sferum_reconcile_runs_total", outcome="ok") == runs + 1
    assert value("sferum_reconcile_changes_total", change="joined") == joined + 4
    assert value("sferum_reconcile_last_duration_seconds") == 1.5


@pytest.mark.parametrize(
    ("unfinished", "oldest_ms", "now_ms", "expected"),
    [
        (0, None, 5_000, (0, 0.0)),
        (2, 1_000, 4_500, (2, 3.5)),
        (1, 6_000, 5_000, (1, 0.0)),  # a clock step back is no negative age
    ],
)
def test_ledger_lag(
    unfinished: int, oldest_ms: int | None, now_ms: int, expected: tuple[int, float]
) -> None:
    assert diary_metrics.ledger_lag(unfinished, oldest_ms, now_ms) == expected
