"""The service distribution stands on its own: no service module imports the tools or their dependencies.

Tools (tools/, `switchboard_tools`) may import the services; the reverse would put the load generator, matplotlib
and tqdm back into the service image, which installs only the root pyproject.toml (tools/README.md).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGE = ROOT / "services" / "switchboard"
# Top-level modules only the tools distribution may import.
TOOLS_ONLY = {"switchboard_tools", "matplotlib", "tqdm"}


def imported_roots(path: Path) -> set[str]:
    """The top-level module of every absolute import in `path` (relative imports stay inside the package)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def service_modules() -> list[Path]:
    """Every Python module of the service package (the generated protobuf code included)."""
    return sorted(SERVICE_PACKAGE.rglob("*.py"))


def test_the_service_package_has_modules_to_check() -> None:
    modules = service_modules()
    assert len(modules) > 50
    assert SERVICE_PACKAGE / "router" / "replay.py" in modules


@pytest.mark.parametrize("path", service_modules(), ids=lambda p: str(p.relative_to(SERVICE_PACKAGE)))
def test_no_service_module_imports_the_tools_or_their_dependencies(path: Path) -> None:
    forbidden = imported_roots(path) & TOOLS_ONLY
    assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}: tooling belongs to tools/"


def test_the_import_check_sees_nested_and_late_imports(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    import tqdm.auto\n    from switchboard_tools.stack import up\n", encoding="utf-8")
    assert imported_roots(module) & TOOLS_ONLY == {"tqdm", "switchboard_tools"}


def requirement_names(pyproject: Path) -> set[str]:
    """The names of a pyproject's runtime dependencies (no extras, no version)."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    return {dep.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for dep in deps}


def test_the_service_distribution_does_not_declare_the_tools_dependencies() -> None:
    services = requirement_names(ROOT / "pyproject.toml")
    tools = requirement_names(ROOT / "tools" / "pyproject.toml")
    assert not services & {"matplotlib", "tqdm", "switchboard-tools"}
    assert {"switchboard", "matplotlib", "tqdm"} <= tools
