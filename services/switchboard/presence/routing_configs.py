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
        try:
            files = {p: p.stat().st_mtime for p in sorted(self.directory.glob("*.yaml"))}
        except OSError as exc:
            log.warning("routing_config_dir_unreadable", directory=str(self.directory), error=repr(exc))
            return None
        for path in set(self._loaded) - set(files):
            del self._loaded[path]
        found = None
        for path, mtime in files.items():
            cached = self._loaded.get(path)
            if cached is None or cached[0] != mtime:
                cached = (mtime, self._load(path))
                self._loaded[path] = cached
            if cached[1] is not None and cached[1].tenant == tenant_id and found is None:
                found = cached[1]
        return found

    @staticmethod
    def _load(path: Path) -> TenantRouting | None:
        try:
            return load_config_file(path)
        except (ConfigError, OSError) as exc:
            log.warning("routing_config_unreadable", file=str(path), error=str(exc))
            return None
