"""The routing policy: every rule of routing, as pure typed functions over plain data.

Used by the router (which then asks Redis to apply a plan atomically), by `switchboard replay` (through the
router itself) and by the gateway's pre-checks of agents' commands. Nothing here does I/O.

- `config`: a tenant's routing config (skill groups, rules, chains, capacity, queue, offers, affinity).
- `classify`: the first message and commerce context → skill group, priority and the rule that decided.
- `intent`: the intent classifier: the examples file's format and checks, training, prediction with a confidence
  (scikit-learn only when training).
- `chain`: the candidate chain (sticky → returning → least loaded → overflow rings) and capacity arithmetic.
- `scoring`: queue score with aging, estimated wait, service level.
- `exclusion`: the decline / missed-offer back-off.
- `drain`: which queued conversations an agent with room takes, in which order.
- `commands`: which agent may accept, decline, close or transfer a conversation.

The router's Lua scripts (router/lua/) decide none of this: they check that what a plan assumed still holds
(agents' presence versions and used slots, conversations' state and epoch, groups' capacity versions) and apply it.
"""
