"""Presence's own Redis scripts (`lua/*.lua`): the sweep's claim of pending agents and the surge schedule claim.

The scripts that change an agent are the state layer's (`switchboard.state.agents_lua`).
"""

from __future__ import annotations

from switchboard.runtime.lua import LuaScript

CLAIM_PENDING = LuaScript.load(__file__, "claim_pending")
CLAIM_SCHEDULE = LuaScript.load(__file__, "claim_schedule")
RESTORE_AGENT = LuaScript.load(__file__, "restore_agent")
