"""Re-evaluating the overflow rings of queued conversations, for every trigger (the sweep's and a profile switch's).

A ring's trigger is checked for a new conversation when it is planned; conversations already waiting are checked
here: on every sweep, and over the whole queue at once when the surge profile in force switches (its rings may be
earlier). `routing.chain.rings_due` says which rings a queued conversation belongs in (its own wait against
`after_s`, the estimated wait of its place in the queue, the group's service level); overflow.lua puts it in each
ring's queue too, if it is still queued at the epoch and in the queues read; the rings' agents are drained once.

A sweep reads the head of each queue (the conversations waiting longest) and one more page further back, taken in
turn, so a long queue is covered within a few sweeps at a bounded cost per sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from switchboard.router.context import RouterContext
from switchboard.router.contract import OverflowRequest
from switchboard.router.drain import drain_groups
from switchboard.router.snapshot import Snapshot, text
from switchboard.routing.chain import rings_due
from switchboard.routing.config import CHANNELS, SkillGroup, TenantRouting

# Queued conversations read per page of one group's queue of one channel.
PAGE = 200


@dataclass
class _Pass:
    """One re-evaluation of a tenant: the snapshot it reads once, and the rings it widened into."""

    config: TenantRouting
    now: int
    snap: Snapshot | None = None
    widened: set[str] = field(default_factory=set)


class OverflowReevaluation:
    """Widens queued conversations into the overflow rings that fire (one per router process)."""

    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        # (tenant, group, channel) -> where the next sweep's page beyond the head starts
        self._cursors: dict[tuple[str, str, str], int] = {}

    async def run(self, config: TenantRouting, now: int, *, whole: bool = False) -> set[str]:
        """Re-evaluate the tenant's queued conversations (`whole`: every one, else the heads and a page in turn);
        returns the rings widened into, whose agents were drained."""
        groups = [g for g in config.skill_groups if g.overflow]
        if not groups:
            return set()
        lengths = await self._lengths(config, groups)
        work = _Pass(config, now)
        for group in groups:
            for ch in CHANNELS:
                for start in self._pages(config.tenant, group.name, ch, lengths[(group.name, ch)], whole):
                    await self._page(work, groups, group, ch, start)
        if work.widened:
            # once for all: a profile switching on may widen hundreds of conversations into the same ring
            await drain_groups(self.ctx, config, sorted(work.widened), now)
        return work.widened

    async def _lengths(self, config: TenantRouting, groups: Sequence[SkillGroup]) -> dict[tuple[str, str], int]:
        wanted = [(g.name, ch) for g in groups for ch in CHANNELS]
        pipe = self.ctx.redis.pipeline(transaction=False)
        for group, ch in wanted:
            pipe.zcard(self.ctx.keys.queue_channel(config.tenant, group, ch))
        return {queue: int(n) for queue, n in zip(wanted, await pipe.execute(), strict=True)}

    def _pages(self, tenant: str, group: str, channel: str, length: int, whole: bool) -> list[int]:
        """Where the pages to read start: all of them, or the head and the next page in turn beyond it."""
        if whole:
            return list(range(0, length, PAGE))
        key = (tenant, group, channel)
        cursor = self._cursors.get(key, PAGE)
        if cursor >= length:
            cursor = PAGE
        self._cursors[key] = cursor + PAGE
        return [0, cursor] if cursor < length else ([0] if length else [])

    async def _page(
        self, work: _Pass, groups: Sequence[SkillGroup], group: SkillGroup, channel: str, start: int
    ) -> None:
        ctx, keys, tenant = self.ctx, self.ctx.keys, work.config.tenant
        members: list[tuple[bytes, float]] = await ctx.redis.zrange(
            keys.queue_channel(tenant, group.name, channel), start, start + PAGE - 1, withscores=True
        )  # type: ignore[assignment]
        if not members:
            return
        if work.snap is None:  # read only when something waits: the groups' agents and figures, once a pass
            work.snap = await ctx.snapshot(work.config, {g.name for g in groups})
        index = work.snap.index()
        pipe = ctx.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(keys.conversation(tenant, text(member[0])), "enqueued_ms", "queues", "group", "epoch")
        rows = await pipe.execute()
        for rank, ((conv, score), row) in enumerate(zip(members, rows, strict=True), start=start):
            enq, queues, primary, epoch = (text(v) for v in row)
            if primary != group.name:
                continue  # waits here as another group's overflow: its own group's rings decide
            waited_s = (work.now - int(enq or work.now)) / 1000
            due = rings_due(work.config, group, work.snap.stats, index, channel, waited_s=waited_s, ahead=rank)
            for ring, why in due:
                if ring.group in queues.split(","):
                    continue
                request = OverflowRequest(text(conv), int(epoch or 0), queues, ring.group, score, why)
                if await self._widen(work.config, request, channel, work.now):
                    queues = f"{queues},{ring.group}"
                    work.widened.add(ring.group)

    async def _widen(self, config: TenantRouting, request: OverflowRequest, channel: str, now: int) -> bool:
        """Put a queued conversation in a ring's queue too; False when it changed meanwhile."""
        ctx = self.ctx
        groups = [q for q in request.queues.split(",") if q]
        ks = ctx.key_set(config).conversation(request.conv).groups([*groups, request.ring], channel)
        return bool(await ctx.apply(config, ctx.scripts.overflow, ks, request.encode(), now, unsent=True))
