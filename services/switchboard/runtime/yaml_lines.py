"""file:line for errors in the YAML config files (routing configs, the agent roster).

pydantic names an error by its location in the data (`tenants.0.agents.2.proficiency.orders`); the YAML node tree
(`yaml.compose`) knows the line of every value. An operator fixes the file from the log line alone. Pure: the
routing policy imports it too.
"""

from __future__ import annotations

import re

import yaml
from pydantic import ValidationError


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the YAML node at a pydantic error location (or of its nearest parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        else:
            child = None
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def located(exc: ValidationError, node: yaml.Node | None, source: str) -> str:
    """`source:line: where: message` of the first error.

    A cross-reference check raised by a model above the offending value names its own location below that model
    ("at rules.3.group: unknown group"), which is followed to the value's line."""
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if isinstance(p, int | str))
    message = str(first["msg"])
    found = re.search(r"\bat ([\w.-]+): (.*)", message)
    if found:
        loc = (*loc, *(int(p) if p.isdigit() else p for p in found.group(1).split(".")))
        message = found.group(2)
    where = ".".join(str(p) for p in loc) or "(top level)"
    return f"{source}:{line_of(node, loc)}: {where}: {message}"


def yaml_error_line(exc: yaml.YAMLError) -> int:
    """The 1-based line a YAML syntax error points at (1 when it names none)."""
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else 1
