"""The bridge's Prometheus metrics, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

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
