"""Routing configs per tenant from a directory, reloaded without restart by polling file mtimes.

A changed file that fails validation is logged with its file:line message and the tenant keeps its previous
config; a removed file removes the tenant (its records then go to the DLQ as "no routing config").

`get` answers with the config in force for routing: the file's, with the tenant's surge profile in force folded in
(router/surge.py); `base` is the file's alone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from switchboard.router.surge import ActiveProfiles
from switchboard.routing.config import ConfigError, TenantRouting, load_config_file
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)


class ConfigStore:
    """The routing config in force for every tenant, from `*.yaml` files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._configs: dict[str, TenantRouting] = {}
        self._tenant_of_file: dict[Path, str] = {}
        self._mtimes: dict[Path, float] = {}
        self.errors: dict[Path, str] = {}
        self._stopping = asyncio.Event()
        # The surge profile in force per tenant (read by the router's upkeep), folded into what `get` answers.
        self.surge = ActiveProfiles()

    def get(self, tenant: str) -> TenantRouting | None:
        """The config in force for a tenant (its surge profile in force folded in), or None when it has none."""
        config = self._configs.get(tenant)
        return None if config is None else self.surge.effective(config)

    def base(self, tenant: str) -> TenantRouting | None:
        """The tenant's config as its file says, without a surge profile."""
        return self._configs.get(tenant)

    def tenants(self) -> list[str]:
        """Every tenant with a config in force."""
        return sorted(self._configs)

    def put(self, config: TenantRouting) -> None:
        """Install a config directly (tests, replay, benchmark)."""
        self._configs[config.tenant] = config

    def poll(self) -> bool:
        """Load what changed since the last poll; True when any tenant's config changed."""
        try:
            files = {p: p.stat().st_mtime for p in sorted(self.directory.glob("*.yaml"))}
        except OSError as exc:
            log.warning("config_dir_unreadable", directory=str(self.directory), error=repr(exc))
            return False
        changed = False
        for path in set(self._mtimes) - set(files):
            tenant = self._tenant_of_file.pop(path, None)
            self._mtimes.pop(path, None)
            if tenant is not None:
                self._configs.pop(tenant, None)
                log.warning("config_removed", tenant=tenant, file=str(path))
                changed = True
        for path, mtime in files.items():
            if self._mtimes.get(path) == mtime:
                continue
            self._mtimes[path] = mtime
            try:
                config = load_config_file(path)
            except ConfigError as exc:
                self.errors[path] = str(exc)
                log.error("config_rejected", file=str(path), error=str(exc), kept_previous=path in self._tenant_of_file)
                continue
            self.errors.pop(path, None)
            owner = next((p for p, t in self._tenant_of_file.items() if t == config.tenant and p != path), None)
            if owner is not None:
                message = f"{path}:1: tenant {config.tenant!r} already configured in {owner}"
                self.errors[path] = message
                log.error("config_rejected", file=str(path), error=message, kept_previous=True)
                continue
            self._tenant_of_file[path] = config.tenant
            self._configs[config.tenant] = config
            log.info("config_loaded", tenant=config.tenant, file=str(path), groups=len(config.skill_groups))
            changed = True
        return changed

    async def watch(self, interval_s: float) -> None:
        """Poll until `stop` is called."""
        while not self._stopping.is_set():
            self.poll()
            try:
                await asyncio.wait_for(self._stopping.wait(), interval_s)
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
