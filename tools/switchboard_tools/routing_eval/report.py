"""Run an evaluation and print it: per group and overall accuracy, the confusion matrix, time per message."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

from switchboard.intake.language import detect_language
from switchboard.router.reload import load_routing_file
from switchboard.routing.config import TenantRouting
from switchboard.routing.intent import Example, parse_examples
from switchboard_tools.routing_eval.chart import confusion_png
from switchboard_tools.routing_eval.compare import Measured, compare, table
from switchboard_tools.routing_eval.measure import (
    Score,
    attached,
    classifier_alone,
    cross_validate,
    pipeline,
    score,
)


def confusion_text(result: Score) -> str:
    """The confusion matrix as text: a row per label, a column per group routed to."""
    labels = sorted(result.matrix)
    columns = labels + sorted(g for g in result.groups if g not in labels)
    width = max(6, *(len(c) for c in columns))
    head = " " * (width + 1) + " ".join(f"{c[:width]:>{width}}" for c in columns)
    rows = [
        f"{label:>{width}} " + " ".join(f"{result.matrix[label].get(c, 0) or '.':>{width}}" for c in columns)
        for label in labels
    ]
    return "\n".join([head, *rows])


def summary(title: str, result: Score) -> str:
    """Accuracy per group and overall, with time per message."""
    lines = [f"== {title}: {result.accuracy():.1%} of {result.total} messages"]
    for label in sorted(result.matrix):
        count = sum(result.matrix[label].values())
        lines.append(f"   {label:14} {result.accuracy(label):6.1%}  ({count})")
    lines.append(
        f"   time per message: p50 {result.percentile(50):.0f} µs, p99 {result.percentile(99):.0f} µs "
        f"(CPU: p50 {result.percentile(50, cpu=True):.0f} µs, p99 {result.percentile(99, cpu=True):.0f} µs)"
    )
    return "\n".join(lines)


def _language_micros(texts: list[str]) -> tuple[float, float]:
    times = []
    for text in texts:
        started = time.perf_counter()
        detect_language(text)
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def timing(config: TenantRouting, heldout: Sequence[Example], passes: int) -> Score:
    """The pipeline's classification time over `passes` rounds of the held-out messages, with the start-up
    objects frozen out of the garbage collector as the router does (router/service.py)."""
    gc.collect()
    gc.freeze()
    try:
        result = Score([])
        for _ in range(passes):
            result.merge(score(heldout, pipeline(config), []))
        return result
    finally:
        gc.unfreeze()


def evaluate(config_path: Path, heldout_path: Path, out: Path, *, folds: int, compare: bool, misses: int) -> float:
    """Print the evaluation of one shop, write the confusion-matrix PNGs into `out`; the pipeline's held-out
    accuracy."""
    config = load_routing_file(config_path)
    model = attached(config)
    groups = [g.name for g in config.skill_groups]
    train_path = config_path.with_name(config_path.stem + ".examples.txt")
    if config.classifier.examples:
        train_path = config_path.parent / config.classifier.examples
    training = parse_examples(train_path.read_bytes(), str(train_path), groups)
    heldout = parse_examples(heldout_path.read_bytes(), str(heldout_path), groups, training=False)
    print(f"{config.tenant}: {len(training)} training lines ({train_path}), {len(heldout)} held out ({heldout_path})")
    print(f"classifier {model.fingerprint}, threshold {config.classifier.threshold}")
    for _ in range(2):  # warm: the first calls pay for caches (compiled rules, numpy)
        score(heldout[:50], pipeline(config), groups)
    whole = score(heldout, pipeline(config), groups)
    alone = score(heldout, classifier_alone(model), groups)
    cv_whole, cv_alone = cross_validate(config, training, folds)
    for title, result in (
        ("held-out, whole pipeline (language, rules, classifier)", whole),
        ("held-out, classifier alone", alone),
        (f"{folds}-fold cross-validation of the training file, whole pipeline", cv_whole),
        (f"{folds}-fold cross-validation of the training file, classifier alone", cv_alone),
    ):
        print(summary(title, result))
    print("\nconfusion matrix, held-out, whole pipeline (rows: label, columns: routed to)")
    print(confusion_text(whole))
    timed = timing(config, heldout, 5)
    print(
        f"\nclassification (rules + classifier) over {len(timed.micros)} calls: p50 {timed.percentile(50):.0f} µs, "
        f"p99 {timed.percentile(99):.0f} µs wall; CPU p50 {timed.percentile(50, cpu=True):.0f} µs, "
        f"p99 {timed.percentile(99, cpu=True):.0f} µs"
    )
    p50, p99 = _language_micros([e.text for e in heldout])
    print(f"\nlanguage detection (the adapters'): p50 {p50:.0f} µs, p99 {p99:.0f} µs per message")
    if misses and whole.misses:
        print("\nsome held-out misses (label → routed to):")
        for label, predicted, text in whole.misses[:misses]:
            print(f"   {label} → {predicted}: {text[:60]!r}")
    for name, result in (("heldout-pipeline", whole), ("heldout-classifier", alone), ("cv-pipeline", cv_whole)):
        print(f"wrote {confusion_png(result, name, out / f'confusion-{name}.png')}")
    if compare:
        print("\nclassifier comparison (held-out and cross-validation accuracy of the classifier alone):")
        print(table(compare_all(training, heldout, folds)))
    return whole.accuracy()


def compare_all(training: list[Example], heldout: list[Example], folds: int) -> list[Measured]:
    """The candidates' figures (a seam for the comparison's import: it pulls in more of scikit-learn)."""
    return compare(training, heldout, folds)
