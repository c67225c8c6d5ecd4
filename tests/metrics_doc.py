"""Reads docs/metrics.md, the one list of exported metrics, for the tests that check metrics against it.

The page has a section per service ("## router", ...) and one for the metrics of "## every service"; each holds a
table whose rows read "| `name` | type | labels | meaning |". A service exports the metrics of "every service"
plus its own section's. A metric some services share is one row, in one of their sections, whose meaning starts
with "Exported by <service>, <service> and <service>". A row whose meaning says "(after first event)" may have no
sample in a scrape.

    from tests.metrics_doc import documented, for_service, names
    names()                      # every documented metric name
    for_service("router")        # what the router must export, by name
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
EVERY_SERVICE = "every service"
SERVICES = ("router", "gateway", "chat", "email", "phone", "presence")
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "info"})
AFTER_FIRST_EVENT = "(after first event)"
EXPORTED_BY = "Exported by "

_SECTION = re.compile(r"^##\s+(.+?)\s*$")
_NAME = re.compile(r"^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricsDocError(ValueError):
    """docs/metrics.md breaks its own table format."""


@dataclass(frozen=True)
class DocMetric:
    """One documented metric: a row of a section's table."""

    name: str
    type: str
    labels: tuple[str, ...]
    meaning: str
    section: str  # "every service" or a service name
    line: int
    # The services that export it: the section's service, or those its "Exported by ..." names; () for every one.
    exporters: tuple[str, ...] = ()

    @property
    def after_first_event(self) -> bool:
        """Exported without a sample until its event happened (HELP and TYPE lines only)."""
        return AFTER_FIRST_EVENT in self.meaning

    def sample_names(self) -> frozenset[str]:
        """The sample names this metric's family may carry in the text format."""
        if self.type in ("histogram", "summary"):
            suffixes = ("_bucket", "_sum", "_count") if self.type == "histogram" else ("", "_sum", "_count")
            return frozenset(self.name + s for s in suffixes)
        return frozenset({self.name})


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row(cells: list[str], section: str, lineno: int) -> DocMetric:
    if len(cells) != 4:
        raise MetricsDocError(f"line {lineno}: a row has 4 columns (name, type, labels, meaning), not {len(cells)}")
    name_cell, type_cell, labels_cell, meaning = cells
    found = _NAME.match(name_cell)
    if not found:
        raise MetricsDocError(f"line {lineno}: the first column is one metric name in backticks: {name_cell!r}")
    kind = type_cell.lower()
    if kind not in TYPES:
        raise MetricsDocError(f"line {lineno}: unknown type {type_cell!r}")
    labels: tuple[str, ...] = ()
    if labels_cell not in ("", "-"):
        labels = tuple(label.strip() for label in labels_cell.split(","))
        bad = [label for label in labels if not _LABEL.match(label)]
        if bad:
            raise MetricsDocError(f"line {lineno}: labels are comma-separated names, not {bad}")
    if not meaning:
        raise MetricsDocError(f"line {lineno}: {found.group(1)} has no meaning")
    return DocMetric(found.group(1), kind, labels, meaning, section, lineno, _exporters(meaning, section, lineno))


def _exporters(meaning: str, section: str, lineno: int) -> tuple[str, ...]:
    """The services named by a meaning's leading "Exported by a, b and c" (up to "(" or "."), else the section's."""
    if not meaning.startswith(EXPORTED_BY):
        return () if section == EVERY_SERVICE else (section,)
    if section == EVERY_SERVICE:
        raise MetricsDocError(f"line {lineno}: a metric of every service names no exporters")
    listed = re.split(r"[(.]", meaning[len(EXPORTED_BY) :], maxsplit=1)[0]
    names = tuple(n.strip() for n in re.split(r",|\band\b", listed) if n.strip())
    unknown = [n for n in names if n not in SERVICES]
    if unknown or section not in names:
        raise MetricsDocError(
            f"line {lineno}: 'Exported by' names services of {SERVICES}, this section's ({section}) among them; "
            f"read {names}"
        )
    return names


def parse(text: str) -> dict[str, list[DocMetric]]:
    """Each "## " section's documented metrics, in page order (sections without a table map to [])."""
    sections: dict[str, list[DocMetric]] = {}
    section: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).strip().lower()
            sections.setdefault(section, [])
            continue
        if section is None or not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        if cells[0].lower() == "name" or set("".join(cells)) <= set("-: "):
            continue  # the header row and its separator
        sections[section].append(_row(cells, section, lineno))
    _check_unique(sections)
    return {name: rows for name, rows in sections.items() if name == EVERY_SERVICE or name in SERVICES}


def _check_unique(sections: dict[str, list[DocMetric]]) -> None:
    seen: dict[str, DocMetric] = {}
    for rows in sections.values():
        for metric in rows:
            first = seen.setdefault(metric.name, metric)
            if first is not metric:
                raise MetricsDocError(
                    f"line {metric.line}: {metric.name} is documented twice (line {first.line} too): a metric some "
                    "services share is one row whose meaning starts 'Exported by <service>, ... and <service>'"
                )


@cache
def documented(path: Path = DOC) -> dict[str, list[DocMetric]]:
    """The page's sections ("every service" and each service), each with its metrics."""
    sections = parse(path.read_text(encoding="utf-8"))
    missing = [s for s in (EVERY_SERVICE, *SERVICES) if s not in sections]
    if missing:
        raise MetricsDocError(f"{path} lacks the sections {missing}")
    return sections


def all_metrics(path: Path = DOC) -> list[DocMetric]:
    """Every documented metric, once."""
    return [m for rows in documented(path).values() for m in rows]


def exporters(name: str, path: Path = DOC) -> list[str]:
    """The services that export metric `name` (every service for one documented under "every service")."""
    return [s for s in SERVICES if name in for_service(s, path)]


def names(path: Path = DOC) -> frozenset[str]:
    """Every documented metric name (what dashboards and alert rules may query, with its sample suffixes)."""
    return frozenset(m.name for m in all_metrics(path))


def sample_names(path: Path = DOC) -> frozenset[str]:
    """Every sample name a documented metric may produce (`x_bucket`, `x_sum`, `x_count` for a histogram x)."""
    return frozenset(s for m in all_metrics(path) for s in m.sample_names())


def for_service(service: str, path: Path = DOC) -> dict[str, DocMetric]:
    """The metrics `service` exports: those of every service, of its own section, and those naming it, by name."""
    if service not in SERVICES:
        raise KeyError(f"no such service: {service}")
    return {m.name: m for m in all_metrics(path) if not m.exporters or service in m.exporters}
