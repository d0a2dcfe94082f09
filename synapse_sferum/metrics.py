"""The module's Prometheus metrics, in Synapse's registry: they show on its metrics listener.

Synapse serves prometheus_client's default registry, so the module's metrics are plain module
level collectors (created once per process, however many times the module is loaded). Labelled
series are created up front, so a dashboard shows zeros instead of nothing before the first
event. What to record is decided by plain functions (`reconcile_changes`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Summary

from sferum_shared.vocabulary import Reason

RECONCILE_RUNS = Counter(
    "sferum_reconcile_runs", "Reconciles of rooms and memberships with the roster", ["outcome"]
)
RECONCILE_DURATION = Summary("sferum_reconcile_duration_seconds", "How long a reconcile took")
RECONCILE_LAST_DURATION = Gauge(
    "sferum_reconcile_last_duration_seconds", "How long the last reconcile took"
)
RECONCILE_CHANGES = Counter(
    "sferum_reconcile_changes", "What reconciles changed, by kind of change", ["change"]
)
REFUSALS = Counter(
    "sferum_refusals", "Actions the module refused, by reason (ru.sferum.reason)", ["reason"]
)

#: ReconcileReport's fields, as `change` labels.
RECONCILE_CHANGE_KINDS = (
    "rooms_created",
    "state_updates",
    "joined",
    "removed",
    "deactivated",
    "failures",
)
for _outcome in ("ok", "failed"):
    RECONCILE_RUNS.labels(_outcome)
for _change in RECONCILE_CHANGE_KINDS:
    RECONCILE_CHANGES.labels(_change)
for _reason in Reason:
    REFUSALS.labels(_reason.value)


def reconcile_outcome(report: Mapping[str, int]) -> str:
    """A run that failed anywhere (a room, a departure) counts as failed."""
    return "failed" if report.get("failures") else "ok"


def record_reconcile(report: Mapping[str, int], seconds: float) -> None:
    RECONCILE_RUNS.labels(reconcile_outcome(report)).inc()
    RECONCILE_DURATION.observe(seconds)
    RECONCILE_LAST_DURATION.set(seconds)
    for change in RECONCILE_CHANGE_KINDS:
        if report.get(change):
            RECONCILE_CHANGES.labels(change).inc(report[change])


def record_refusal(reason: str) -> None:
    REFUSALS.labels(reason).inc()
