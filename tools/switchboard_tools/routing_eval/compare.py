"""The classifiers measured before choosing one (`make eval-routing EVAL_ARGS=--compare`): TF-IDF over character
n-grams (1–3, 2–4; `char` vs `char_wb`) with logistic regression, a linear SVM (calibrated for a confidence),
complement naive Bayes and SGD, each scored on the held-out file and by k-fold cross-validation of the training
file, with its training time and scikit-learn's own time per message (one call per message, as a router would)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.routing.intent import Example, normalize
from switchboard_tools.routing_eval.measure import folds

FEATURES = (("char_wb", 1, 3), ("char", 1, 3), ("char_wb", 2, 4), ("char", 2, 4))
KINDS = ("logreg C=10", "linearsvc+calib", "complementnb", "sgd log_loss")


@dataclass(frozen=True)
class Candidate:
    """One classifier to measure: its features (analyzer, n-gram range) and its kind (one of KINDS, or
    "logreg C=<c>")."""

    analyzer: str
    low: int
    high: int
    kind: str

    @property
    def name(self) -> str:
        """As the table prints it."""
        return f"{self.analyzer} {self.low}-{self.high} {self.kind}"

    def build(self) -> Any:
        """A fresh scikit-learn pipeline (every random state fixed)."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, SGDClassifier
        from sklearn.naive_bayes import ComplementNB
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC

        tfidf = TfidfVectorizer(
            analyzer=self.analyzer,
            ngram_range=(self.low, self.high),
            lowercase=False,
            preprocessor=normalize,
            sublinear_tf=True,
        )
        classifier: Any
        if self.kind.startswith("logreg C="):
            classifier = LogisticRegression(C=float(self.kind.split("=")[1]), max_iter=2000, random_state=0)
        elif self.kind == "linearsvc+calib":
            classifier = CalibratedClassifierCV(LinearSVC(C=1.0, random_state=0), cv=3, ensemble=False)
        elif self.kind == "complementnb":
            classifier = ComplementNB(alpha=0.3)
        else:
            classifier = SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=50, tol=None, random_state=0)
        return make_pipeline(tfidf, classifier)


def candidates() -> list[Candidate]:
    """The grid: feature sets × classifiers, and the chosen one's regularisation either side."""
    grid = [Candidate(a, lo, hi, kind) for a, lo, hi in FEATURES for kind in KINDS]
    return [*grid, Candidate("char_wb", 1, 3, "logreg C=1"), Candidate("char_wb", 1, 3, "logreg C=100")]


@dataclass(frozen=True)
class Measured:
    """One candidate's figures."""

    name: str
    heldout: float
    cv: float
    train_s: float
    p50_us: float
    p99_us: float


def _accuracy(model: Any, examples: Sequence[Example]) -> float:
    predicted = model.predict([e.text for e in examples])
    right = sum(bool(p == e.group) for p, e in zip(predicted, examples, strict=True))
    return right / max(1, len(examples))


def measure(candidate: Candidate, train: Sequence[Example], heldout: Sequence[Example], k: int) -> Measured:
    """Held-out accuracy, k-fold accuracy, training time and per-call time of one candidate."""
    started = time.perf_counter()
    model = candidate.build().fit([e.text for e in train], [e.group for e in train])
    train_s = time.perf_counter() - started
    held = _accuracy(model, heldout) if heldout else 0.0
    right = 0
    for fit, test in folds(train, k):
        fold = candidate.build().fit([e.text for e in fit], [e.group for e in fit])
        right += round(_accuracy(fold, test) * len(test))
    times = []
    for e in list(heldout or train)[:300]:
        t0 = time.perf_counter()
        model.predict_proba([e.text])
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return Measured(
        candidate.name,
        held,
        right / max(1, len(train)),
        train_s,
        times[len(times) // 2],
        times[min(len(times) - 1, int(len(times) * 0.99))],
    )


def compare(train: Sequence[Example], heldout: Sequence[Example], k: int) -> list[Measured]:
    """Every candidate measured, best held-out accuracy first."""
    found = [measure(c, train, heldout, k) for c in candidates()]
    return sorted(found, key=lambda m: (-m.heldout, -m.cv))


def table(found: Sequence[Measured]) -> str:
    """The comparison as a text table."""
    lines = [f"{'classifier':34} {'held-out':>8} {'cv':>7} {'train s':>8} {'p50 µs':>8} {'p99 µs':>8}"]
    for m in found:
        lines.append(f"{m.name:34} {m.heldout:8.1%} {m.cv:7.1%} {m.train_s:8.2f} {m.p50_us:8.0f} {m.p99_us:8.0f}")
    return "\n".join(lines)
