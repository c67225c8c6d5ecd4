"""The tenants' routing configs as presence reads them: to check surge profiles against (unknown groups, rings).

The router owns these files and reloads them (router/reload.py); presence only reads the one tenant a profile
names, when an operator defines or switches it, so a file edited since is read again (by its mtime).
"""

from __future__ import annotations

from pathlib import Path

from switchboard.routing.config import ConfigError, TenantRouting, load_config_file
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)


class RoutingConfigs:
    """The routing config of each tenant from `*.yaml` files of one directory, read on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: dict[Path, tuple[float, TenantRouting | None]] = {}

    def get(self, tenant_id: str) -> TenantRouting | None:
        """The tenant's config, or None when no valid file names it."""
        return next((config for config in self._configs() if config.tenant == tenant_id), None)

    def tenants(self) -> set[str]:
        """The tenants a valid file names."""
        return {config.tenant for config in self._configs()}

    def _configs(self) -> list[TenantRouting]:
        """Every valid config of the directory, in file order (files read again when their mtime changed)."""
        try:
            files = {p: p.stat().st_mtime for p in sorted(self.directory.glob("*.yaml"))}
        except OSError as exc:
            log.warning("routing_config_dir_unreadable", directory=str(self.directory), error=repr(exc))
            return []
        for path in set(self._loaded) - set(files):
            del self._loaded[path]
        found = []
        for path, mtime in files.items():
            cached = self._loaded.get(path)
            if cached is None or cached[0] != mtime:
                cached = (mtime, self._load(path))
                self._loaded[path] = cached
            if cached[1] is not None:
                found.append(cached[1])
        return found

    @staticmethod
    def _load(path: Path) -> TenantRouting | None:
        try:
            return load_config_file(path)
        except (ConfigError, OSError) as exc:
            log.warning("routing_config_unreadable", file=str(path), error=str(exc))
            return None
