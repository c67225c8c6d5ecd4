"""The confusion matrix as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# The backend is chosen before pyplot is imported: no display on servers and CI.
import matplotlib.pyplot as plt

from switchboard_tools.routing_eval.measure import Score


def confusion_png(result: Score, title: str, path: Path) -> Path:
    """Rows: the label; columns: the group routing chose; cells: messages (the diagonal is right)."""
    labels = sorted(result.matrix)
    columns = labels + sorted(g for g in result.groups if g not in labels)
    cells = [[result.matrix.get(row, {}).get(col, 0) for col in columns] for row in labels]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(columns), 1.0 + 0.6 * len(labels)))
    ax.imshow(cells, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("routed to")
    ax.set_ylabel("label")
    ax.set_title(f"{title}: {result.accuracy():.1%} of {result.total}")
    high = max((max(row) for row in cells), default=1)
    for i, row in enumerate(cells):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", color="white" if n > high / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
