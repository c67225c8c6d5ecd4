"""Redis scripts from `.lua` files, run the same way on one Redis server and on Redis Cluster.

A script lives in a `lua/` folder beside the module that loads it, one file per script, and names its KEYS and
ARGV as locals at the top. It touches only the keys it declares in KEYS, all of one tenant (hash tag `{tenant}`),
so on a cluster it runs on the node owning that tenant's slot. Shared Lua functions (libraries, no KEYS of their
own) are files too and are prepended by `LuaScript.load(..., libs=...)`.

Calls go by EVALSHA; a node that does not know the script yet answers NOSCRIPT (the call did nothing), and the
script is then loaded (on every primary of a cluster) and the call made again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Arg = str | int | float | bytes


def lua_file(module_file: str, name: str) -> str:
    """The text of `lua/<name>.lua` beside the module `module_file` (pass `__file__`)."""
    return (Path(module_file).resolve().parent / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class LuaScript:
    """One script: its source (libraries first) and SHA1, callable on any client."""

    name: str
    source: str

    @classmethod
    def load(cls, module_file: str, name: str, libs: Sequence[str] = ()) -> LuaScript:
        """`lua/<name>.lua` beside `module_file`, after the library sources `libs` (already read texts).

        A `#!lua flags=...` line of the script stays the first line, where Redis looks for it.
        """
        body = lua_file(module_file, name)
        shebang = ""
        if body.startswith("#!"):
            shebang, _, body = body.partition("\n")
            shebang += "\n"
        return cls(name, shebang + "\n".join((*libs, body)))

    @cached_property
    def sha(self) -> str:
        """The SHA1 Redis knows the script by (computed once: scripts are called thousands of times a second)."""
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: Redis, keys: Sequence[str | bytes], args: Sequence[Arg] = ()) -> Any:
        """Run the script once with `keys` and `args`."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


@dataclass(frozen=True)
class ScriptCall:
    """One queued call of a script."""

    script: LuaScript
    keys: Sequence[str | bytes]
    args: Sequence[Arg] = ()


async def run_pipelined(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run script calls in one non-transactional pipeline (one round trip per node), results in call order.

    A cluster pipeline refuses `evalsha()` itself, so the command goes through `execute_command`, which routes
    it by its first key. Calls that met NOSCRIPT did nothing; they are run again once their scripts are loaded.
    The first other error is raised, as a plain pipeline would.
    """
    results: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for attempt in range(2):
        pipe = redis.pipeline(transaction=False)
        for i in pending:
            call = calls[i]
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        answers = await pipe.execute(raise_on_error=False)
        missing: list[int] = []
        for i, answer in zip(pending, answers, strict=True):
            if isinstance(answer, NoScriptError) and attempt == 0:
                missing.append(i)
            elif isinstance(answer, Exception):
                raise answer
            else:
                results[i] = answer
        if not missing:
            break
        for source in {calls[i].script.source for i in missing}:
            await redis.script_load(source)
        pending = missing
    return results
