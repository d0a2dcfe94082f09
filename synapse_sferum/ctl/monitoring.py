"""What `sferumctl init` writes for monitoring: prometheus.yml and grafana-dashboard.json.

Both are built as plain data from the deployment's metrics endpoints and dumped, so tests read
them back as data. Every process that serves metrics is one `MetricsEndpoint` record; a Synapse
worker with a metrics listener of its own joins the scrape config by appending one more record
(job "synapse", its worker name as `process`), and shows in every Synapse panel by its label.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence

import attrs
import yaml

from synapse_sferum.ctl.settings import Settings

#: Synapse's metrics listener serves the same page on any path; this is the one its docs name.
SYNAPSE_METRICS_PATH = "/_synapse/metrics"
DEFAULT_SCRAPE_INTERVAL = "15s"
#: The label every target carries: the process's name as `sferumctl status` shows it.
PROCESS_LABEL = "process"


@attrs.frozen
class MetricsEndpoint:
    """One process whose /metrics Prometheus scrapes."""

    job: str  # the kind of process: synapse, diary-bridge, sfu
    process: str  # this one: synapse (main), a worker's name, sfu-edge-1, ...
    address: str  # HOST:PORT, reachable from this machine
    path: str = "/metrics"


def _local(bind: str, port: int) -> str:
    """HOST:PORT to reach a listener bound to `bind` from this machine (a host name as it is)."""
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        return f"{bind}:{port}"
    if ip.is_unspecified:
        ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"


def metrics_endpoints(settings: Settings) -> tuple[MetricsEndpoint, ...]:
    """Every process of the deployment that serves metrics, named as `sferumctl` names it."""
    endpoints = [
        MetricsEndpoint(
            "synapse",
            "synapse",
            _local(settings.metrics_bind, settings.metrics_port),
            SYNAPSE_METRICS_PATH,
        )
    ]
    if settings.topology is not None:  # `init --workers`: each worker on its own listener
        endpoints += [
            MetricsEndpoint(
                "synapse",
                f"synapse-{worker.name}",
                _local(worker.host, worker.metrics_port),
                SYNAPSE_METRICS_PATH,
            )
            for worker in settings.topology.workers
            if worker.metrics_port is not None
        ]
    if settings.diary_sources:  # the bridge listens on loopback only (bridge.yaml)
        endpoints.append(
            MetricsEndpoint("diary-bridge", "diary-bridge", f"127.0.0.1:{settings.diary_port}")
        )
    if settings.sfu_port is not None:
        endpoints.append(MetricsEndpoint("sfu", "sfu", _local(settings.bind, settings.sfu_port)))
    for number, port in enumerate(settings.sfu_edge_ports, 1):
        endpoints.append(MetricsEndpoint("sfu", f"sfu-edge-{number}", _local(settings.bind, port)))
    return tuple(endpoints)


def prometheus_config(
    endpoints: Sequence[MetricsEndpoint], scrape_interval: str = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, object]:
    """One scrape job per kind of process, one target per process, labelled with its name."""
    jobs: dict[str, list[MetricsEndpoint]] = {}
    for endpoint in endpoints:
        jobs.setdefault(endpoint.job, []).append(endpoint)
    scrape_configs = []
    for job, members in jobs.items():
        paths = {m.path for m in members}
        if len(paths) != 1:
            raise ValueError(f"job {job}: its processes serve metrics at different paths {paths}")
        scrape_configs.append(
            {
                "job_name": job,
                "metrics_path": members[0].path,
                "static_configs": [
                    {"targets": [m.address], "labels": {PROCESS_LABEL: m.process}} for m in members
                ],
            }
        )
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": scrape_configs,
    }


_PROMETHEUS_HEADER = """\
# Prometheus's scrape config for {server_name}: every process of the deployment that serves
# metrics. Written by `sferumctl init` (synapse_sferum/ctl/monitoring.py); run e.g.
#   prometheus --config.file={path}
# or copy its scrape_configs into the school's Prometheus.
"""


def render_prometheus_config(settings: Settings, path: str) -> str:
    header = _PROMETHEUS_HEADER.format(server_name=settings.server_name, path=path)
    return header + yaml.safe_dump(prometheus_config(metrics_endpoints(settings)), sort_keys=False)


# -- the dashboard ---------------------------------------------------------------------------


@attrs.frozen
class Query:
    expr: str
    legend: str
    # Whether a deployment that just started has data for it (the integration test checks
    # those are non-empty); counters that appear on their first event may have none yet.
    always: bool = True


@attrs.frozen
class Panel:
    title: str
    unit: str  # Grafana's unit id: reqps, s, bytes, short, ops
    queries: tuple[Query, ...]
    description: str = ""


@attrs.frozen
class Row:
    title: str
    panels: tuple[Panel, ...]


_RATE = "[5m]"
DASHBOARD: tuple[Row, ...] = (
    Row(
        "Synapse",
        (
            Panel(
                "Requests by servlet",
                "reqps",
                (
                    Query(
                        "sum by (servlet) (rate(synapse_http_server_requests_received_total"
                        f"{_RATE}))",
                        "{{servlet}}",
                    ),
                ),
            ),
            Panel(
                "Response time p95 by servlet",
                "s",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (le, servlet) "
                        f"(rate(synapse_http_server_response_time_seconds_bucket{_RATE})))",
                        "{{servlet}}",
                    ),
                ),
            ),
            Panel(
                "Events persisted",
                "ops",
                (
                    Query(
                        "sum by (process) (rate(synapse_storage_events_persisted_events_total"
                        f"{_RATE}))",
                        "{{process}}",
                        always=False,
                    ),
                ),
            ),
            Panel(
                "Database transaction time by kind (top 10)",
                "s",
                (
                    Query(
                        "topk(10, sum by (desc) "
                        f"(rate(synapse_storage_transaction_time_sum_total{_RATE})))",
                        "{{desc}}",
                    ),
                ),
                "Seconds spent in each kind of transaction per second: 1 means one busy core.",
            ),
            Panel(
                "Reactor tick p99",
                "s",
                (
                    Query(
                        "histogram_quantile(0.99, sum by (le, process) "
                        f"(rate(python_twisted_reactor_tick_time_bucket{_RATE})))",
                        "{{process}}",
                    ),
                ),
                "A long tick is a stalled Synapse: every request waits for it.",
            ),
        ),
    ),
    Row(
        "Processes",
        (
            Panel(
                "Memory (resident) per process",
                "bytes",
                (Query("process_resident_memory_bytes", "{{process}}"),),
            ),
            Panel(
                "CPU per process",
                "percentunit",
                (Query(f"rate(process_cpu_seconds_total{_RATE})", "{{process}}"),),
            ),
            Panel("Targets up", "short", (Query("up", "{{process}}"),)),
        ),
    ),
    Row(
        "The platform (module)",
        (
            Panel(
                "Reconciles",
                "short",
                (
                    Query(
                        "sum by (outcome) (increase(sferum_reconcile_runs_total[1h]))",
                        "{{outcome}} per hour",
                    ),
                ),
            ),
            Panel(
                "Reconcile duration (mean)",
                "s",
                (
                    Query(
                        f"rate(sferum_reconcile_duration_seconds_sum{_RATE}) / "
                        f"rate(sferum_reconcile_duration_seconds_count{_RATE})",
                        "mean",
                        always=False,
                    ),
                    Query("sferum_reconcile_last_duration_seconds", "last run"),
                ),
            ),
            Panel(
                "Reconcile changes",
                "short",
                (
                    Query(
                        "sum by (change) (increase(sferum_reconcile_changes_total[1h]))",
                        "{{change}} per hour",
                    ),
                ),
                "Rooms created, memberships made and removed, accounts deactivated, failures.",
            ),
            Panel(
                "Refusals by reason",
                "ops",
                (
                    Query(
                        f"sum by (reason) (rate(sferum_refusals_total{_RATE}))",
                        "{{reason}}",
                    ),
                ),
                "Actions the school's rules refused (ru.sferum.reason).",
            ),
        ),
    ),
    Row(
        "Diary bridge",
        (
            Panel(
                "Diary messages relayed",
                "ops",
                (
                    Query(
                        f"sum by (kind) (rate(diary_posted_total{_RATE}))",
                        "posted {{kind}}",
                        always=False,
                    ),
                    Query(
                        f"sum by (kind) (rate(diary_edited_total{_RATE}))",
                        "edited {{kind}}",
                        always=False,
                    ),
                    Query(
                        f"sum by (kind) (rate(diary_failed_total{_RATE}))",
                        "failed {{kind}}",
                        always=False,
                    ),
                ),
            ),
            Panel(
                "Diary syncs and problems",
                "ops",
                (
                    Query(
                        f"sum by (outcome) (rate(diary_syncs_total{_RATE}))", "sync {{outcome}}"
                    ),
                    Query(
                        f"sum by (source, kind) (rate(diary_source_problems_total{_RATE}))",
                        "{{source}} {{kind}}",
                        always=False,
                    ),
                ),
            ),
            Panel(
                "Diary lag",
                "s",
                (
                    Query("time() - diary_last_sync_timestamp_seconds", "since the last sync"),
                    Query("diary_source_lag_seconds", "source {{source}}"),
                    Query("diary_ledger_oldest_pending_seconds", "oldest unfinished post"),
                ),
                "A growing lag: the bridge cannot sync, or a post stays unfinished in its ledger.",
            ),
        ),
    ),
    Row(
        "SFU (calls)",
        (
            Panel(
                "Rooms and participants",
                "short",
                (
                    Query("sum by (process) (sfu_rooms)", "rooms {{process}}"),
                    Query("sum by (process) (sfu_participants)", "participants {{process}}"),
                    Query("sum by (process) (sfu_streams)", "tracks {{process}}"),
                ),
            ),
            Panel(
                "Packets forwarded",
                "pps",
                (
                    Query(
                        f"sum by (process) (rate(sfu_packets_in_total{_RATE}))", "in {{process}}"
                    ),
                    Query(
                        f"sum by (process) (rate(sfu_packets_out_total{_RATE}))", "out {{process}}"
                    ),
                ),
            ),
            Panel(
                "Bytes forwarded",
                "Bps",
                (
                    Query(f"sum by (process) (rate(sfu_bytes_in_total{_RATE}))", "in {{process}}"),
                    Query(
                        f"sum by (process) (rate(sfu_bytes_out_total{_RATE}))", "out {{process}}"
                    ),
                ),
                "RTP payload bytes.",
            ),
            Panel(
                "Call token refusals by reason",
                "ops",
                (
                    Query(
                        f"sum by (reason) (rate(sfu_auth_refusals_total{_RATE}))",
                        "{{reason}}",
                        always=False,
                    ),
                ),
            ),
            Panel(
                "SFU event-loop lag and forwarding delay",
                "s",
                (
                    Query("sfu_event_loop_lag_seconds", "loop lag {{process}}"),
                    Query(
                        f"rate(sfu_forwarding_delay_seconds_sum{_RATE}) / "
                        f"rate(sfu_forwarding_delay_seconds_count{_RATE})",
                        "forwarding {{process}}",
                        always=False,
                    ),
                ),
            ),
        ),
    ),
)


def dashboard_queries(rows: Iterable[Row] = DASHBOARD) -> list[Query]:
    return [query for row in rows for panel in row.panels for query in panel.queries]


_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_WIDTH = 8  # of Grafana's 24 columns: three panels a row
_HEIGHT = 8


def grafana_dashboard(server_name: str, rows: Sequence[Row] = DASHBOARD) -> dict[str, object]:
    """Grafana's dashboard model (importable as is: it asks for its Prometheus data source)."""
    panels: list[dict[str, object]] = []
    y = 0
    for row in rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for index, panel in enumerate(row.panels):
            column = index % (24 // _WIDTH)
            if index and not column:
                y += _HEIGHT
            panels.append(
                {
                    "id": len(panels) + 1,
                    "type": "timeseries",
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": _DATASOURCE,
                    "gridPos": {"h": _HEIGHT, "w": _WIDTH, "x": column * _WIDTH, "y": y},
                    "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "targets": [
                        {
                            "refId": chr(ord("A") + n),
                            "datasource": _DATASOURCE,
                            "expr": query.expr,
                            "legendFormat": query.legend,
                        }
                        for n, query in enumerate(panel.queries)
                    ],
                }
            )
        y += _HEIGHT
    return {
        "title": f"synapse-sferum: {server_name}",
        "uid": "sferum-" + "".join(c if c.isalnum() else "-" for c in server_name)[:32],
        "tags": ["synapse-sferum", "matrix"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": panels,
    }


def render_dashboard(settings: Settings) -> str:
    return json.dumps(grafana_dashboard(settings.server_name), indent=2, ensure_ascii=False) + "\n"
