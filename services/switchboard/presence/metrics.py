"""Prometheus metrics of presence."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SWEPT_OFFLINE = Counter("sb_presence_swept_offline_total", "Agents set offline because their heartbeats stopped")
WRAP_UPS_ENDED = Counter("sb_presence_wrap_ups_ended_total", "Agents back to available after the wrap-up timer")
REPUBLISHED = Counter("sb_presence_republished_total", "AgentPresence records republished after a failed send")
SCHEDULE_ACTIONS = Counter("sb_presence_schedule_actions_total", "Surge schedules applied or reverted", ["action"])
SWEEP_SECONDS = Histogram(
    "sb_presence_sweep_seconds",
    "Time of one sweep over every tenant",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AGENTS = Gauge("sb_presence_agents", "Agents by tenant and status", ["tenant", "status"])
ROSTER_RELOADS = Counter("sb_presence_roster_reloads_total", "Roster file reloads", ["result"])
STATE_REBUILDS = Counter(
    "sb_presence_state_rebuilds_total",
    "Tenants whose presence state was rebuilt from the presence topic and the roster (its state mark was missing)",
)
