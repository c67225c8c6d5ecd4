"""Routing configs per tenant from a directory, reloaded without restart by polling file mtimes.

A changed file that fails validation is logged with its file:line message and the tenant keeps its previous
config; a removed file removes the tenant (its records then go to the DLQ as "no routing config").

`get` answers with the config in force for routing: the file's, with the tenant's surge profile in force folded in
(router/surge.py); `base` is the file's alone.

A config with an intent classifier (its `<stem>.examples.txt` beside it, or the file its `classifier.examples`
names) is trained at load and carries the model (routing/intent.py); a change of either file reloads and
retrains, and a bad examples file is rejected like a bad config (file:line in the log, the previous config and
model stay). Training the same examples again reuses the model already trained.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from switchboard.router.surge import ActiveProfiles
from switchboard.routing.config import ConfigError, TenantRouting, load_config_file
from switchboard.routing.intent import ExamplesError, IntentModel, parse_examples, train
from switchboard.runtime.logs import get_logger

log = get_logger(__name__)
EXAMPLES_SUFFIX = ".examples.txt"
# Models by a digest of the examples file and the config's groups: an edit of the config alone trains nothing.
_TRAINED: dict[str, IntentModel] = {}


def examples_path(path: Path, config: TenantRouting) -> Path | None:
    """The examples file of the config read from `path`: the one `classifier.examples` names, else
    `<stem>.examples.txt` when it exists; None without one or with the classifier disabled."""
    if not config.classifier.enabled:
        return None
    if config.classifier.examples:
        return path.parent / config.classifier.examples
    default = path.with_name(path.stem + EXAMPLES_SUFFIX)
    return default if default.exists() else None


def with_classifier(config: TenantRouting, examples: Path | None) -> TenantRouting:
    """The config with its intent classifier trained from `examples` (unchanged when None); ConfigError with the
    examples file's file:line when it cannot be taken."""
    if examples is None:
        return config
    try:
        raw = examples.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{examples}:1: cannot read the intent examples: {exc}") from exc
    groups = sorted(g.name for g in config.skill_groups)
    key = hashlib.sha256(raw + "\0".join(groups).encode()).hexdigest()
    model = _TRAINED.get(key)
    if model is None:
        if len(_TRAINED) >= 64:  # edits over a long life: forget old models (configs in force keep theirs)
            _TRAINED.clear()
        try:
            found = parse_examples(raw, str(examples), groups)
        except ExamplesError as exc:
            raise ConfigError(str(exc)) from exc
        started = time.perf_counter()
        model = _TRAINED[key] = train(found)
        log.info(
            "intent_classifier_trained",
            tenant=config.tenant,
            file=str(examples),
            examples=len(found),
            groups=len(model.groups),
            fingerprint=model.fingerprint,
            seconds=round(time.perf_counter() - started, 3),
        )
    config._intent = model
    return config


def load_routing_file(path: Path) -> TenantRouting:
    """Read and validate one tenant's config and train its intent classifier (ConfigError naming file:line)."""
    config = load_config_file(path)
    return with_classifier(config, examples_path(path, config))


class ConfigStore:
    """The routing config in force for every tenant, from `*.yaml` files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._configs: dict[str, TenantRouting] = {}
        self._tenant_of_file: dict[Path, str] = {}
        # Per config file: its mtime and its examples file's (0 without one), so a change of either reloads it.
        self._mtimes: dict[Path, tuple[float, float]] = {}
        # Per config file: the examples file it names (or would: `<stem>.examples.txt`).
        self._examples: dict[Path, Path] = {}
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
            files = {p: (p.stat().st_mtime, self._examples_mtime(p)) for p in sorted(self.directory.glob("*.yaml"))}
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
                examples = examples_path(path, config)
                if examples is not None:
                    self._examples[path] = examples
                config = with_classifier(config, examples)
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

    def _examples_mtime(self, path: Path) -> float:
        """The mtime of the config's examples file; 0 when there is none."""
        examples = self._examples.get(path, path.with_name(path.stem + EXAMPLES_SUFFIX))
        try:
            return examples.stat().st_mtime
        except OSError:
            return 0.0

    async def watch(self, interval_s: float) -> None:
        """Poll until `stop` is called (in a thread: training a classifier takes a moment the loop must not wait)."""
        while not self._stopping.is_set():
            await asyncio.to_thread(self.poll)
            try:
                await asyncio.wait_for(self._stopping.wait(), interval_s)
            except TimeoutError:
                continue

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
