"""The bridge's Prometheus metrics, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, CPU, open files

ITEMS_SEEN = Counter(
    "diary_items_seen", "Items read from the sources in each sync", ["kind"], registry=REGISTRY
)
POSTED = Counter("diary_posted", "New messages sent", ["kind"], registry=REGISTRY)
EDITED = Counter("diary_edited", "Messages edited (m.replace)", ["kind"], registry=REGISTRY)
REDACTED = Counter("diary_redacted", "Messages redacted", ["kind"], registry=REGISTRY)
FAILED = Counter("diary_failed", "Posts that failed", ["kind"], registry=REGISTRY)
PROBLEMS = Counter(
    "diary_source_problems", "Bad items in the sources", ["source", "kind"], registry=REGISTRY
)
SOURCE_LAG = Gauge(
    "diary_source_lag_seconds",
    "Seconds since each source was last read successfully",
    ["source"],
    registry=REGISTRY,
)
SYNCS = Counter("diary_syncs", "Syncs run", ["outcome"], registry=REGISTRY)
SYNCS.labels("ok")  # so the dashboard has a series before the first sync ends
LAST_SYNC = Gauge(
    "diary_last_sync_timestamp_seconds",
    "When the last sync that reached the homeserver finished (Unix time)",
    registry=REGISTRY,
)
LEDGER_UNFINISHED = Gauge(
    "diary_ledger_unfinished",
    "Posts, edits and redactions begun in the ledger and not finished yet",
    registry=REGISTRY,
)
LEDGER_OLDEST_UNFINISHED = Gauge(
    "diary_ledger_oldest_pending_seconds",
    "Age of the oldest unfinished ledger intent (0 when none): a stuck post shows here",
    registry=REGISTRY,
)


def ledger_lag(unfinished: int, oldest_ms: int | None, now_ms: int) -> tuple[int, float]:
    """The ledger's gauges: unfinished intents, and the oldest one's age in seconds."""
    return unfinished, 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
