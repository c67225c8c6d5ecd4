"""Redis scripts of agents' presence (`state/lua/*.lua`): every change of an agent's presence is one atomic script.

Each script that changes what an AgentPresence record would say bumps `presence_version` and puts the agent in
the tenant's pending set; the store publishes the record after the script and takes the agent out of the pending
set only if the version it published is still the current one. A crash between the script and the publish is
repaired by the sweep, which republishes agents pending for too long.

Numbers read from the hash go through `tonumber(...) or 0`: a field edited by hand into garbage must not make a
script fail (and with it every sweep of the tenant).

Every key a script touches is in its KEYS, all of one tenant (hash tag `{tenant}`), so the scripts run on a Redis
Cluster. The group sets an agent leaves are only known from its hash, so the caller reads its groups first and
names their sets; a script finding other groups (changed meanwhile) answers RETRY and writes nothing.
"""

from __future__ import annotations

from switchboard.runtime.lua import LuaScript, lua_file
from switchboard.state.outbox import DESK_APPEND_LUA

# Result codes shared by the scripts.
CHANGED = 1
UNCHANGED = 0
STALE_SESSION = -1
UNKNOWN_AGENT = -2
NEEDS_LOGIN = -3
RETRY = -4

# For scripts of other services that must change an agent's status in their own atomic step (the router sets an
# agent `away` after missed offers inside its offer-timeout script): include this, call `presence_set_status(...)`
# instead of HSET `status`, then call `PresenceStore.publish(tenant, [agent])` after the script. If that publish
# never happens the presence sweep republishes the agent's whole state within SB_REPUBLISH_AFTER_S. Do not publish
# a hand-built, partial AgentPresence: on the compacted topic it would replace the agent's whole state.
PRESENCE_STATUS_LUA = lua_file(__file__, "presence_status")

TRANSITION = LuaScript.load(__file__, "transition", libs=(DESK_APPEND_LUA, PRESENCE_STATUS_LUA))
LOGIN = LuaScript.load(__file__, "login", libs=(DESK_APPEND_LUA, PRESENCE_STATUS_LUA))
HEARTBEAT = LuaScript.load(__file__, "heartbeat")
PROFILE = LuaScript.load(__file__, "profile", libs=(PRESENCE_STATUS_LUA,))
REMOVE = LuaScript.load(__file__, "remove", libs=(PRESENCE_STATUS_LUA,))
CLEAR_PENDING = LuaScript.load(__file__, "clear_pending")
