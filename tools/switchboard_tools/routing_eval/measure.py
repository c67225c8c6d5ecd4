"""The figures of an evaluation, as plain data: accuracy per group, the confusion matrix, time per message."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from switchboard.intake.language import detect_language
from switchboard.routing.classify import Facts, classify, intent_model
from switchboard.routing.config import TenantRouting
from switchboard.routing.intent import Example, IntentModel, train

# A decision for one message: the group, wall time and CPU time of the decision (µs).
Run = Callable[[str], tuple[str, float, float]]


def timed(decide: Callable[[str], str]) -> Run:
    """`decide` with its wall and CPU time per call."""

    def run(text: str) -> tuple[str, float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        group = decide(text)
        return group, (time.perf_counter() - wall) * 1e6, (time.thread_time() - cpu) * 1e6

    return run


@dataclass
class Score:
    """Predictions against labels: per-group and overall accuracy, the confusion matrix, time per message."""

    groups: list[str]
    matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    micros: list[float] = field(default_factory=list)
    # CPU time of the same calls (the thread's): what a message costs, without the waits of a shared machine.
    cpu_micros: list[float] = field(default_factory=list)
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, label: str, predicted: str, micros: float, text: str, cpu_micros: float = 0.0) -> None:
        """Count one message."""
        row = self.matrix.setdefault(label, {})
        row[predicted] = row.get(predicted, 0) + 1
        self.micros.append(micros)
        self.cpu_micros.append(cpu_micros)
        if predicted != label:
            self.misses.append((label, predicted, text))
        if predicted not in self.groups:
            self.groups.append(predicted)

    def merge(self, other: Score) -> None:
        """Add another score's counts (the folds of a cross-validation)."""
        for label, row in other.matrix.items():
            for predicted, n in row.items():
                mine = self.matrix.setdefault(label, {})
                mine[predicted] = mine.get(predicted, 0) + n
                if predicted not in self.groups:
                    self.groups.append(predicted)
        self.micros.extend(other.micros)
        self.cpu_micros.extend(other.cpu_micros)
        self.misses.extend(other.misses)

    @property
    def total(self) -> int:
        """Messages counted."""
        return sum(sum(row.values()) for row in self.matrix.values())

    def accuracy(self, group: str | None = None) -> float:
        """Share of messages (of one label, or all) given their label; 0 without any."""
        labels = [group] if group is not None else list(self.matrix)
        right = sum(self.matrix.get(label, {}).get(label, 0) for label in labels)
        count = sum(sum(self.matrix.get(label, {}).values()) for label in labels)
        return right / count if count else 0.0

    def percentile(self, q: float, cpu: bool = False) -> float:
        """The q-th percentile (0–100) of time per message (wall, or the thread's CPU time), µs (nearest rank)."""
        samples = self.cpu_micros if cpu else self.micros
        if not samples:
            return 0.0
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def pipeline(config: TenantRouting, channel: str = "chat") -> Run:
    """The router's decision for a first message: language detection (the adapters', not timed), then the rules
    and the classifier (timed)."""

    def run(text: str) -> tuple[str, float, float]:
        facts = Facts(text=text, channel=channel, language=detect_language(text))
        return timed(lambda _: classify(config, facts).group)(text)

    return run


def classifier_alone(model: IntentModel) -> Run:
    """The classifier's best group among all of its groups."""

    def decide(text: str) -> str:
        found = model.predict(text)
        return "" if found is None else found.group

    return timed(decide)


def score(examples: Sequence[Example], run: Run, groups: Sequence[str]) -> Score:
    """Run every example through `run` and count."""
    result = Score(list(groups))
    for e in examples:
        predicted, micros, cpu = run(e.text)
        result.add(e.group, predicted, micros, e.text, cpu)
    return result


def folds(examples: Sequence[Example], k: int) -> list[tuple[list[Example], list[Example]]]:
    """Stratified k folds (deterministic: every group's examples dealt round-robin in file order)."""
    by_group: dict[str, list[Example]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    buckets: list[list[Example]] = [[] for _ in range(k)]
    for items in by_group.values():
        for i, e in enumerate(items):
            buckets[i % k].append(e)
    return [([e for j, b in enumerate(buckets) if j != i for e in b], bucket) for i, bucket in enumerate(buckets)]


def cross_validate(config: TenantRouting, examples: Sequence[Example], k: int) -> tuple[Score, Score]:
    """k-fold cross-validation of the training file: (whole pipeline, classifier alone)."""
    groups = sorted({e.group for e in examples})
    whole, alone = Score(list(groups)), Score(list(groups))
    for fit, held in folds(examples, k):
        model = train(fit)
        trial = config.model_copy()
        trial._intent = model
        whole.merge(score(held, pipeline(trial), groups))
        alone.merge(score(held, classifier_alone(model), groups))
    return whole, alone


def attached(config: TenantRouting) -> IntentModel:
    """The config's classifier (SystemExit when it has none: nothing to evaluate)."""
    model = intent_model(config)
    if model is None:
        raise SystemExit(f"tenant {config.tenant!r} has no intent classifier (no examples file, or disabled)")
    return model
