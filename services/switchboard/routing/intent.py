"""Intent classification: labelled example messages per skill group → a classifier that names a group and its
confidence for a new conversation's first message.

The examples file sits beside the tenant's routing config (`<stem>.examples.txt`, docs/routing.md "Intent
classification"): `[group]` headers, one message per line under the latest header, `#` comments and blank lines
ignored, a literal `\\n` standing for a line break. `parse_examples` checks it and names `file:line` on any error.

The model is TF-IDF over character n-grams (Chinese needs no word segmentation that way, and typos, mixed
Chinese-English and emoji still share most n-grams) with a linear classifier per group (averaged SGD on the
logistic loss, one-vs-rest), trained by scikit-learn; `train` is deterministic (fixed seed, same examples → the
same coefficients), so a replay of a day's traffic with the same files reaches the same decisions. A group's
probability is its logistic score normalised over the groups the message may go to, as scikit-learn's
`predict_proba` does over all of them. Prediction does not go through scikit-learn's per-call machinery (sparse
matrices, input validation: ~1 ms a message): it looks the message's n-grams up in the fitted vocabulary and sums
the matching coefficient rows with numpy, some 20–60 µs a message (docs/routing.md has the measured figures).

scikit-learn is imported inside `train` only: presence, the gateway and the adapters import the routing config
and never pay for it.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# A longer line is a pasted document, not a customer message: refused so a slip cannot skew a group.
MAX_LINE_CHARS = 1000
# Fewer examples than this cannot describe a group; the file is refused.
MIN_EXAMPLES_PER_GROUP = 5
_HEADER = re.compile(r"^\[([^\[\]]*)\]$")
# An order, tracking or phone number says "there is a number here", not which one: runs of 5+ digits become one
# token, so 16-digit order ids do not fill the vocabulary with n-grams of digits.
_LONG_NUMBER = re.compile(r"[0-9]{5,}")
_SPACES = re.compile(r"\s+")


class ExamplesError(ValueError):
    """An examples file cannot be taken; the message points at file:line."""


@dataclass(frozen=True)
class Example:
    """One labelled message and the line it came from."""

    text: str
    group: str
    line: int


@dataclass(frozen=True)
class Prediction:
    """The classifier's group for a message and its probability among the groups it could choose."""

    group: str
    confidence: float


def normalize(text: str) -> str:
    """The form both training and prediction see: NFKC (full-width letters and digits as ASCII), case-folded,
    long digit runs as one token, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACES.sub(" ", _LONG_NUMBER.sub("#", folded)).strip()


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ExamplesError(f"{source}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from exc


def _header(line: str, number: int, source: str, groups: Collection[str] | None) -> str | None:
    found = _HEADER.match(line)
    if found is None:
        return None
    name = found.group(1).strip()
    if not name:
        raise ExamplesError(f"{source}:{number}: empty group header []")
    if groups is not None and name not in groups:
        known = ", ".join(sorted(groups))
        raise ExamplesError(f"{source}:{number}: unknown skill group [{name}] (the config's groups: {known})")
    return name


def parse_examples(
    raw: bytes | str, source: str, groups: Collection[str] | None = None, *, training: bool = True
) -> list[Example]:
    """The labelled examples of a file's content; ExamplesError naming `source:line` when it cannot be taken.

    `groups`: the config's skill groups (a header naming another is an error); None accepts any name.
    `training`: a file to train on needs two groups of at least MIN_EXAMPLES_PER_GROUP (a held-out file does not).
    """
    text = _decode(raw, source) if isinstance(raw, bytes) else raw
    examples: list[Example] = []
    seen: dict[str, Example] = {}
    headers: dict[str, int] = {}
    group: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name = _header(stripped, number, source, groups)
        if name is not None:
            group = name
            headers.setdefault(name, number)
            continue
        if group is None:
            raise ExamplesError(f"{source}:{number}: a message before any [group] header")
        if len(stripped) > MAX_LINE_CHARS:
            raise ExamplesError(f"{source}:{number}: a line of {len(stripped)} characters (at most {MAX_LINE_CHARS})")
        example = Example(stripped.replace("\\n", "\n"), group, number)
        key = normalize(example.text)
        earlier = seen.get(key)
        if earlier is not None and earlier.group != group:
            raise ExamplesError(
                f"{source}:{number}: the same message is under [{earlier.group}] at line {earlier.line} "
                f"and under [{group}]"
            )
        if earlier is None:
            seen[key] = example
            examples.append(example)
    if training:
        _check_counts(examples, headers, source)
    return examples


def _check_counts(examples: Sequence[Example], headers: dict[str, int], source: str) -> None:
    counts = Counter(e.group for e in examples)
    for name, line in headers.items():
        if counts[name] < MIN_EXAMPLES_PER_GROUP:
            raise ExamplesError(
                f"{source}:{line}: [{name}] has {counts[name]} examples (at least {MIN_EXAMPLES_PER_GROUP})"
            )
    if len(counts) < 2:
        raise ExamplesError(f"{source}:1: examples of at least two groups are needed, found {len(counts)}")


@dataclass(frozen=True)
class Features:
    """How text becomes features: character n-grams of `analyzer` ("char" or "char_wb") from `low` to `high`."""

    analyzer: str = "char_wb"
    low: int = 1
    high: int = 3
    sublinear_tf: bool = True


def _vectorizer(features: Features) -> object:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=features.analyzer,
        ngram_range=(features.low, features.high),
        lowercase=False,
        preprocessor=normalize,
        sublinear_tf=features.sublinear_tf,
        dtype=np.float64,
    )


class IntentModel:
    """A trained classifier: the vocabulary, idf weights and per-group coefficients (one-vs-rest logistic scores),
    applied by hand."""

    def __init__(
        self,
        groups: Sequence[str],
        analyze: Callable[[str], list[str]],
        vocabulary: dict[str, int],
        idf: npt.NDArray[np.float64],
        coef: npt.NDArray[np.float64],
        intercept: npt.NDArray[np.float64],
        *,
        sublinear_tf: bool,
        fingerprint: str,
    ) -> None:
        self.groups = tuple(groups)
        self._analyze = analyze
        self._vocabulary = vocabulary
        self._idf = idf
        # Feature-major (n_features × n_groups): one message's few features pick contiguous rows.
        self._coef = np.ascontiguousarray(coef.T)
        self._intercept = intercept
        self._sublinear = sublinear_tf
        self.fingerprint = fingerprint
        self._index = {g: i for i, g in enumerate(self.groups)}

    def scores(self, text: str) -> npt.NDArray[np.float64]:
        """The decision function per group (as `groups`), as the fitted classifier's decision_function."""
        counts = Counter(self._analyze(text))
        columns: list[int] = []
        weights: list[float] = []
        for gram, n in counts.items():
            column = self._vocabulary.get(gram)
            if column is not None:
                columns.append(column)
                weights.append(1.0 + math.log(n) if self._sublinear else float(n))
        if not columns:
            return self._intercept.copy()
        idx = np.asarray(columns, dtype=np.intp)
        values = np.asarray(weights) * self._idf[idx]
        values /= math.sqrt(float(values @ values))
        result: npt.NDArray[np.float64] = values @ self._coef[idx] + self._intercept
        return result

    def predict(self, text: str, allowed: Collection[str] | None = None) -> Prediction | None:
        """The most probable group among `allowed` (all groups when None) and its probability among them;
        None when none of `allowed` has examples."""
        scores = self.scores(text)
        if allowed is not None:
            picks = [self._index[g] for g in self.groups if g in allowed]
            if not picks:
                return None
            names = [self.groups[i] for i in picks]
            scores = scores[picks]
        else:
            names = list(self.groups)
        # One-vs-rest logistic scores, normalised over the groups in play (scikit-learn's predict_proba over all).
        odds = 1.0 / (1.0 + np.exp(-scores))
        best = int(odds.argmax())
        total = float(odds.sum())
        return Prediction(names[best], float(odds[best]) / total if total > 0 else 1.0 / len(names))


def fingerprint(examples: Iterable[Example], features: Features, alpha: float) -> str:
    """A digest of what a model is trained from (examples, features, regularisation): equal digests, equal models."""
    digest = hashlib.sha256(repr((features, alpha)).encode())
    for e in examples:
        digest.update(f"{e.group}\t{e.text}\n".encode())
    return digest.hexdigest()[:16]


# Regularisation of the SGD classifier (measured against others: docs/routing.md, "Intent classification").
ALPHA = 1e-5


def classifier(alpha: float = ALPHA) -> object:
    """The scikit-learn classifier `train` fits (deterministic: fixed seed and number of passes)."""
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=alpha, max_iter=50, tol=None, average=True, random_state=0)


def train(examples: Sequence[Example], features: Features = Features(), alpha: float = ALPHA) -> IntentModel:
    """Fit the classifier on the examples (deterministic: same examples, same coefficients)."""
    vectorizer = _vectorizer(features)
    matrix = vectorizer.fit_transform([e.text for e in examples])  # type: ignore[attr-defined]
    model = classifier(alpha)
    model.fit(matrix, [e.group for e in examples])  # type: ignore[attr-defined]
    groups = [str(g) for g in model.classes_]  # type: ignore[attr-defined]
    coef = np.asarray(model.coef_, dtype=np.float64)  # type: ignore[attr-defined]
    intercept = np.asarray(model.intercept_, dtype=np.float64)  # type: ignore[attr-defined]
    if len(groups) == 2:
        # A binary fit keeps one row (the second group's score): the first group's is its negation.
        coef, intercept = np.vstack([-coef, coef]), np.array([-intercept[0], intercept[0]])
    return IntentModel(
        groups,
        vectorizer.build_analyzer(),  # type: ignore[attr-defined]
        {str(k): int(v) for k, v in vectorizer.vocabulary_.items()},  # type: ignore[attr-defined]
        np.asarray(vectorizer.idf_, dtype=np.float64),  # type: ignore[attr-defined]
        coef,
        intercept,
        sublinear_tf=features.sublinear_tf,
        fingerprint=fingerprint(examples, features, alpha),
    )
