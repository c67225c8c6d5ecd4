"""No service imports another service's package: services meet in `state`, `runtime` and `contracts`, and the
routing policy (`routing`, pure) is shared by the router and the gateway's pre-checks.

Parses every module under services/switchboard with `ast` (imports inside functions count too) and checks each
`switchboard.<package>` it imports against what its own package may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "services" / "switchboard"

SHARED = frozenset({"contracts", "runtime", "state"})
# The routing policy: pure rules, imported by the services that decide or pre-check routing.
POLICY = frozenset({"routing"})
ADAPTERS = frozenset({"chat", "email", "phone"})
SERVICES = ADAPTERS | {"router", "presence", "gateway"}

# What each layer may import besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    **{service: SHARED for service in SERVICES - ADAPTERS},
    "router": SHARED | POLICY,
    # Surge profiles are routing policy that presence defines, validates and applies to agents.
    "presence": SHARED | POLICY,
    "gateway": SHARED | POLICY,
    # Pure: it takes only the runtime's pure helpers (the YAML line walk of config errors).
    "routing": frozenset({"runtime"}),
    **{adapter: SHARED | {"intake"} for adapter in ADAPTERS},
    "intake": SHARED,
    # The state layer stores what the policy defines (the proficiency scale and its agent-hash field).
    "state": frozenset({"contracts", "runtime", "routing"}),
    # The operators' DLQ command reads and re-drives records, and masks payloads (runtime/pii.py).
    "dlq": SHARED,
    "runtime": frozenset({"contracts"}),
    "contracts": frozenset(),
}


def is_tooling(path: Path) -> bool:
    """Benchmarks still kept inside service packages are tooling, not the service (they drive a whole stack)."""
    return path.name.startswith("bench")


def imported_packages(source: str, own: tuple[str, ...]) -> set[str]:
    """The `switchboard.<package>` names a module imports, wherever in the module the import is.

    `own` is the module's path below services/switchboard (for relative imports)."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = ["switchboard", *own[: len(own) - node.level]]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
            if names == ["switchboard"]:
                names = [f"switchboard.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name.split(".")[1] for name in names if name.startswith("switchboard.") and "." in name)
    return found


def layer_modules() -> list[tuple[str, Path]]:
    """Every (layer, module path) the rules cover."""
    return [
        (layer, path)
        for layer in sorted(ALLOWED)
        for path in sorted((PACKAGE_ROOT / layer).rglob("*.py"))
        if not is_tooling(path)
    ]


def test_every_layer_exists() -> None:
    missing = [layer for layer in ALLOWED if not (PACKAGE_ROOT / layer / "__init__.py").is_file()]
    assert missing == []


@pytest.mark.parametrize(
    ("layer", "path"), layer_modules(), ids=lambda v: str(v.relative_to(PACKAGE_ROOT)) if isinstance(v, Path) else v
)
def test_module_imports_only_what_its_layer_may_use(layer: str, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    foreign = imported_packages(source, path.relative_to(PACKAGE_ROOT).parts) - ALLOWED[layer] - {layer}
    assert not foreign, f"{path.relative_to(PACKAGE_ROOT)} ({layer}) imports switchboard.{sorted(foreign)}"


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import switchboard.chat.frames\n"
        "from switchboard import router\n"
        "def f():\n"
        "    from switchboard.presence import api\n"
        "    from ..email import smtp\n"
        "    from . import hub\n"
    )
    assert imported_packages(source, ("gateway", "app.py")) == {"chat", "router", "presence", "email", "gateway"}
