"""The example shop's labelled messages: training file and held-out file are well formed and kept apart."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from switchboard.intake.language import detect_language
from switchboard.routing.config import TenantRouting, load_config_file
from switchboard.routing.intent import parse_examples

# Held-out lines may not be this close to a training line (Jaccard similarity of character bigrams after folding).
NEAR_DUPLICATE = 0.7
_NOT_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")


def _read(path: Path) -> list[tuple[str, str]]:
    """(group, message) pairs of an examples file, as the router parses it (routing/intent.py)."""
    return [(e.group, e.text) for e in parse_examples(path.read_bytes(), str(path), training=False)]


def _folded(message: str) -> str:
    """The message as compared for copies: width and case folded, punctuation and spaces gone, numbers alike."""
    text = unicodedata.normalize("NFKC", message).casefold()
    return _DIGITS.sub("0", _NOT_WORD.sub("", text))


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)} or {text}


@pytest.fixture(scope="module")
def tmall(repo_root: Path) -> TenantRouting:
    return load_config_file(repo_root / "config" / "routing" / "tmall-flagship.yaml")


@pytest.fixture(scope="module")
def training(repo_root: Path) -> list[tuple[str, str]]:
    return _read(repo_root / "config" / "routing" / "tmall-flagship.examples.txt")


@pytest.fixture(scope="module")
def heldout(repo_root: Path) -> list[tuple[str, str]]:
    return _read(repo_root / "config" / "routing" / "eval" / "tmall-flagship.heldout.txt")


def test_every_intent_group_has_examples_in_both_files(
    tmall: TenantRouting, training: list[tuple[str, str]], heldout: list[tuple[str, str]]
) -> None:
    intents = {g.name for g in tmall.skill_groups} - {"general"}  # the surge pool is no intent
    for pairs, least in ((training, 100), (heldout, 30)):
        counts = Counter(group for group, _ in pairs)
        assert set(counts) == intents
        assert min(counts.values()) >= least, counts
    # About a quarter of all messages is held out, and there are enough to measure to a percent or so.
    assert len(training) + len(heldout) >= 1000
    assert 0.2 <= len(heldout) / (len(training) + len(heldout)) <= 0.3


def test_no_message_is_labelled_twice_or_repeated(
    training: list[tuple[str, str]], heldout: list[tuple[str, str]]
) -> None:
    for pairs in (training, heldout):
        seen: dict[str, str] = {}
        for group, message in pairs:
            key = _folded(message)
            assert key not in seen, f"{message!r} under [{group}] repeats one under [{seen.get(key)}]"
            seen[key] = group


def test_no_heldout_message_copies_a_training_message(
    training: list[tuple[str, str]], heldout: list[tuple[str, str]]
) -> None:
    trained = [(message, _bigrams(_folded(message))) for _, message in training]
    for _, message in heldout:
        grams = _bigrams(_folded(message))
        for other, other_grams in trained:
            similarity = len(grams & other_grams) / len(grams | other_grams)
            assert similarity < NEAR_DUPLICATE, f"held-out {message!r} is a near copy of training {other!r}"


def test_the_copy_check_sees_through_spacing_case_punctuation_and_numbers() -> None:
    assert _folded("Where is my order 123?") == _folded("where is my  ORDER 456")
    assert _folded("在吗？亲") == _folded("在吗 亲")
    assert _folded("在吗") != _folded("在么")


def test_labels_follow_the_language_policy(training: list[tuple[str, str]], heldout: list[tuple[str, str]]) -> None:
    # Chinese by intent; English cross_border unless a complaint; every other language cross_border.
    for group, message in training + heldout:
        code = detect_language(message)
        if code == "zh":
            assert group != "cross_border", message
        elif code == "en":
            assert group in ("cross_border", "complaints"), message
        else:
            assert group == "cross_border", (code, message)
