"""make eval-routing's code on a tiny shop: accuracy per group, the confusion matrix, cross-validation folds,
the PNG, and the exit status below the bar."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.routing.intent import Example
from switchboard_tools.routing_eval.__main__ import main
from switchboard_tools.routing_eval.measure import Score, folds
from tests.unit.test_routing_intent import CONFIG, SMALL

HELDOUT = """\
[presales]
这个有蓝色的吗
[orders]
地址能改一下吗 写错了
[logistics]
快递三天了还没到
[after_sales]
杯子收到就裂了
"""


def shop(tmp_path: Path, heldout: str = HELDOUT) -> Path:
    (tmp_path / "eval").mkdir()
    (tmp_path / "small-x.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "small-x.examples.txt").write_text(SMALL, encoding="utf-8")
    (tmp_path / "eval" / "small-x.heldout.txt").write_text(heldout, encoding="utf-8")
    return tmp_path / "small-x.yaml"


def test_score_counts_accuracy_per_group_and_the_matrix() -> None:
    score = Score(["a", "b"])
    for label, predicted in (("a", "a"), ("a", "b"), ("b", "b"), ("b", "c")):
        score.add(label, predicted, 10.0, "x")
    assert score.total == 4 and score.accuracy() == 0.5 and score.accuracy("a") == 0.5
    assert score.matrix == {"a": {"a": 1, "b": 1}, "b": {"b": 1, "c": 1}} and "c" in score.groups
    assert score.percentile(50) == 10.0


def test_folds_are_stratified_and_cover_every_example_once() -> None:
    examples = [Example(f"{g}{i}", g, i) for g in "ab" for i in range(10)]
    made = folds(examples, 5)
    held = [e for _, test in made for e in test]
    assert sorted(held, key=lambda e: e.text) == sorted(examples, key=lambda e: e.text)
    for fit, test in made:
        assert {e.group for e in test} == {"a", "b"} and not set(fit) & set(test)


def test_the_eval_prints_its_figures_writes_the_png_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = shop(tmp_path)
    assert main(["--config", str(config), "--out", str(tmp_path / "out"), "--folds", "3", "--min-accuracy", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "held-out, whole pipeline" in printed and "3-fold cross-validation" in printed
    assert "p99" in printed and "confusion matrix" in printed
    assert (tmp_path / "out" / "confusion-heldout-pipeline.png").read_bytes().startswith(b"\x89PNG")


def test_the_eval_fails_below_the_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every held-out line labelled with a group it does not belong to: the pipeline cannot reach the bar.
    wrong = HELDOUT.replace("[presales]", "[tmp]").replace("[orders]", "[presales]").replace("[tmp]", "[orders]")
    config = shop(tmp_path, wrong)
    assert main(["--config", str(config), "--out", str(tmp_path / "out"), "--folds", "3"]) == 1
    assert "FAIL: held-out accuracy" in capsys.readouterr().out
