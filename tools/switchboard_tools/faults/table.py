"""A row of the fault table, and the table as text (the terminal and docs/reliability.md print the same)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS = (
    "fault",
    "injections",
    "acked",
    "lost",
    "duplicated",
    "double-owned",
    "over-capacity",
    "reordered",
    "recovery",
    "note",
)


@dataclass(frozen=True)
class FaultRow:
    """What one fault did to the messages of the load running through it.

    `acked`: messages (or, for the input sweeps, requests) the system acknowledged during the row. `lost`: acked and
    never on their owner's desk. `duplicated`: on one owner's desk twice under one epoch. `double_owned`:
    conversations two agents were given under one epoch. `over_capacity`: samples of an agent holding more than
    their capacity. `reordered`: messages that reached their owner before an earlier one of their conversation.
    `recovery_s`: the longest time, over the injections, from a fault until the messages it held up were delivered
    (None: not measured). A sweep uses the loss columns for what it counts (e.g. 5xx, leaks) and says so in `note`.
    """

    fault: str
    injections: int
    acked: int
    lost: int
    duplicated: int
    double_owned: int
    over_capacity: int
    reordered: int
    recovery_s: float | None
    note: str = ""

    @property
    def clean(self) -> bool:
        """True when every loss column is zero."""
        return not (self.lost or self.duplicated or self.double_owned or self.over_capacity or self.reordered)

    def cells(self) -> list[str]:
        """The row's cells as printed."""
        recovery = "–" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        counts = (self.injections, self.acked, self.lost, self.duplicated, self.double_owned, self.over_capacity)
        return [self.fault, *(str(c) for c in counts), str(self.reordered), recovery, self.note]


def markdown_table(rows: Sequence[FaultRow]) -> str:
    """The rows as a Markdown table (pipes in notes escaped)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |")
    return "\n".join(lines)
