"""The decline / missed-offer back-off: an agent who declined or missed a conversation's offer (or transferred it
to a group) is passed over for it for `reoffer_after_s` only, so a conversation never waits for good while an
agent who once missed it has room.

A conversation's `declined` field lists `agent@until_ms` entries (docs/state.md); an entry without a time excludes
nobody.
"""

from __future__ import annotations


def excluded_now(declined: str, now_ms: int) -> frozenset[str]:
    """Agents the field still passes over at `now_ms`."""
    out = set()
    for entry in declined.split(","):
        agent, _, until = entry.rpartition("@")
        if agent and until.isdigit() and int(until) > now_ms:
            out.add(agent)
    return frozenset(out)


def exclude(declined: str, agent_id: str, back_off_ms: int, now_ms: int) -> str:
    """The field with `agent_id` passed over for `back_off_ms` from now (expired entries and its older one go)."""
    keep = []
    for entry in declined.split(","):
        agent, _, until = entry.rpartition("@")
        if agent and agent != agent_id and until.isdigit() and int(until) > now_ms:
            keep.append(entry)
    keep.append(f"{agent_id}@{now_ms + back_off_ms}")
    return ",".join(keep)
