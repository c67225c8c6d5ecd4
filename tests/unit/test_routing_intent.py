"""Intent classification: the examples file's errors name file:line, training is deterministic, the classifier
decides after the rules, below its threshold the default group takes the message, channels and languages are
honoured."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from switchboard.router.reload import ConfigStore, load_routing_file
from switchboard.routing.classify import Facts, classify, intent_model
from switchboard.routing.config import ConfigError, TenantRouting, parse_config
from switchboard.routing.intent import ExamplesError, normalize, parse_examples, train

DATA = Path(__file__).parent / "data"
SMALL = (DATA / "small-shop.examples.txt").read_text(encoding="utf-8")
GROUPS = {"presales", "orders", "logistics", "after_sales", "complaints", "general"}

CONFIG = """\
tenant: small-x
default_group: presales
default_groups: {phone: general}
skill_groups:
  - name: presales
    channels: [chat, email]
  - name: orders
  - name: logistics
  - name: after_sales
    channels: [chat, email]
  - name: complaints
    languages: [zh, en]
  - name: general
rules:
  - name: complaint-words
    group: complaints
    priority: 30
    match:
      keywords: [投诉]
  - name: refund-words
    group: after_sales
    priority: 10
    match:
      keywords: [退款]
classifier:
  threshold: 0.4
"""


def small_config(tmp_path: Path, examples: str = SMALL, config: str = CONFIG) -> TenantRouting:
    (tmp_path / "small-x.yaml").write_text(config, encoding="utf-8")
    (tmp_path / "small-x.examples.txt").write_text(examples, encoding="utf-8")
    return load_routing_file(tmp_path / "small-x.yaml")


def error_of(text: str | bytes) -> str:
    with pytest.raises(ExamplesError) as caught:
        parse_examples(text, "shop.examples.txt", GROUPS)
    return str(caught.value)


def five(group: str, stem: str) -> str:
    return f"[{group}]\n" + "".join(f"{stem} {i}\n" for i in range(5))


def test_the_format_comments_blank_lines_and_line_breaks() -> None:
    text = (
        "# a comment\n\n"
        + five("orders", "改地址")
        + "  [presales]  \n有货吗\\n M码\n"
        + "".join(f"有货吗 {i}\n" for i in range(4))
    )
    found = parse_examples(text, "f", GROUPS)
    assert [e.group for e in found].count("orders") == 5
    assert found[5].text == "有货吗\n M码" and found[5].line == 10 and found[5].group == "presales"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("有货吗\n" + five("presales", "x"), r"shop.examples.txt:1: a message before any [group] header"),
        (five("presales", "x") + "[nowhere]\n", r"shop.examples.txt:7: unknown skill group [nowhere]"),
        (five("presales", "x") + "[orders]\n改地址\n", r"shop.examples.txt:7: [orders] has 1 examples (at least 5)"),
        (five("presales", "x") + five("orders", "y") + "[presales]\n" + "y 3\n", "shop.examples.txt:14: the same"),
        (
            five("presales", "x") + five("orders", "y") + "[orders]\n" + "长" * 1001 + "\n",
            "shop.examples.txt:14: a line of 1001",
        ),
        (five("presales", "x"), "examples of at least two groups"),
    ],
)
def test_errors_name_the_file_and_line(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected) or expected in error_of(text)


def test_the_same_message_under_two_groups_names_both_lines() -> None:
    message = error_of(five("presales", "x") + five("orders", "y") + "[presales]\n Y  3 \n")
    assert message == "shop.examples.txt:14: the same message is under [orders] at line 11 and under [presales]"


def test_a_file_that_is_not_utf8_names_the_line_of_the_bad_byte() -> None:
    raw = (five("presales", "x") + five("orders", "y")).encode() + "[orders]\n坏".encode("gbk") + b"\n"
    assert error_of(raw).startswith("shop.examples.txt:14: not UTF-8 text")


def test_normalize_folds_width_case_and_long_numbers() -> None:
    assert normalize("  ＯＫ 订单 2408151234567890  在吗 ") == "ok 订单 # 在吗"


def test_training_is_deterministic() -> None:
    examples = parse_examples(SMALL, "small", GROUPS)
    first, second = train(examples), train(list(examples))
    assert first.fingerprint == second.fingerprint
    for text in ("快递怎么还没到", "有红色的吗", "杯子裂了"):
        assert np.array_equal(first.scores(text), second.scores(text))


def test_the_hand_written_inference_matches_scikit_learn() -> None:
    from switchboard.routing.intent import Features, _vectorizer, classifier

    examples = parse_examples(SMALL, "small", GROUPS)
    model = train(examples)
    vectorizer = _vectorizer(Features())
    matrix = vectorizer.fit_transform([e.text for e in examples])  # type: ignore[attr-defined]
    reference: Any = classifier()
    reference.fit(matrix, [e.group for e in examples])
    for text in ("快递怎么还没到 2408151234567890", "这个有红色的吗", "能改地址吗", "zzz"):
        expected = reference.predict_proba(vectorizer.transform([text]))[0]  # type: ignore[attr-defined]
        found = model.predict(text)
        assert found is not None
        assert found.group == reference.classes_[int(expected.argmax())]
        assert found.confidence == pytest.approx(float(expected.max()), abs=1e-9)


def test_greetings_and_fillers_alone_go_to_the_default_group(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    for text in ("你好", "亲 在吗？", "hello 😊", "好的 谢谢", "2408151234567890"):
        got = classify(config, Facts(text=text))
        assert (got.group, got.rule, got.by, got.confidence) == ("presales", "no_intent", "default", 0)
    assert classify(config, Facts(text="亲 买了三天了还在广州")).by == "classifier"


def test_no_rule_the_classifier_decides_with_its_confidence(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    got = classify(config, Facts(text="买了三天了还在广州 物流一直不动"))
    assert (got.group, got.rule, got.by) == ("logistics", "classifier", "classifier")
    assert 0.4 <= got.confidence <= 1


def test_rules_come_first(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    got = classify(config, Facts(text="快递到哪了 我要投诉"))
    assert (got.group, got.rule, got.by, got.confidence, got.priority) == (
        "complaints",
        "complaint-words",
        "rule",
        0,
        30,
    )


def test_below_the_threshold_the_default_group_takes_it_and_says_so(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    strict = config.model_copy(update={"classifier": config.classifier.model_copy(update={"threshold": 1.0})})
    got = classify(strict, Facts(text="买了三天了还在广州"))
    assert (got.group, got.rule, got.by) == ("presales", "default", "low_confidence")
    assert 0 < got.confidence < 1


def test_channels_skip_rules_and_bound_the_classifier(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    # after_sales takes no phone: its rule is skipped and the classifier chooses among the groups that take phone.
    got = classify(config, Facts(text="要退款 杯子裂了", channel="phone"))
    assert got.by != "rule" and got.group not in ("after_sales", "presales")
    assert config.takes(got.group, "phone")
    nothing = classify(
        config.model_copy(update={"classifier": config.classifier.model_copy(update={"enabled": False})}),
        Facts(text="你好", channel="phone"),
    )
    assert (nothing.group, nothing.by) == ("general", "default")


def test_a_language_some_group_serves_bounds_the_classifier(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    got = classify(config, Facts(text="where is my parcel, it has been a week", language="en"))
    assert got.group == "complaints"  # the only group that serves English


def test_the_surge_copy_keeps_the_model(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    copy = config.model_copy(update={"default_priority": 3})
    assert intent_model(copy) is intent_model(config) is not None


def test_without_an_examples_file_there_is_no_classifier(tmp_path: Path) -> None:
    (tmp_path / "small-x.yaml").write_text(CONFIG, encoding="utf-8")
    config = load_routing_file(tmp_path / "small-x.yaml")
    assert intent_model(config) is None
    assert classify(config, Facts(text="买了三天了还在广州")).by == "default"


def test_a_named_examples_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "small-x.yaml").write_text(CONFIG + "  examples: other.txt\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"other\.txt:1: cannot read"):
        load_routing_file(tmp_path / "small-x.yaml")


def test_every_channel_needs_a_default_that_takes_it() -> None:
    with pytest.raises(ConfigError, match=r"shop\.yaml:2: default_group: the default group of phone \('presales'\)"):
        parse_config(CONFIG.replace("default_groups: {phone: general}\n", ""), "shop.yaml")
    with pytest.raises(ConfigError, match=r"default_groups\.phone: 'nowhere' is not a skill group"):
        parse_config(CONFIG.replace("{phone: general}", "{phone: nowhere}"), "shop.yaml")


def test_reload_retrains_on_an_examples_change_and_keeps_the_model_on_a_bad_one(tmp_path: Path) -> None:
    small_config(tmp_path)
    store = ConfigStore(tmp_path)
    assert store.poll()
    first = intent_model(store.get("small-x"))  # type: ignore[arg-type]
    assert first is not None

    examples = tmp_path / "small-x.examples.txt"
    examples.write_text(SMALL + "[complaints]\n" + "".join(f"你们这服务太差了 {i}\n" for i in range(5)), "utf-8")
    os.utime(examples, (10, 10))
    assert store.poll()
    second = intent_model(store.get("small-x"))  # type: ignore[arg-type]
    assert second is not None and "complaints" in second.groups and second.fingerprint != first.fingerprint

    examples.write_text(SMALL + "[nowhere]\n", "utf-8")
    os.utime(examples, (20, 20))
    assert not store.poll()
    assert intent_model(store.get("small-x")) is second  # type: ignore[arg-type]
    assert store.errors[tmp_path / "small-x.yaml"].startswith(f"{examples}:")
    assert "unknown skill group [nowhere]" in store.errors[tmp_path / "small-x.yaml"]


def test_replacing_the_rule_keeps_the_classification_fields() -> None:
    # A Classification built by hand (a conversation the bot held) defaults to a rule's decision.
    from switchboard.routing.classify import Classification

    held = Classification("orders", 5, "order-change")
    assert (held.by, held.confidence) == ("rule", 0.0)
    assert replace(held, by="classifier").by == "classifier"


def test_replay_loads_the_same_model_from_the_same_files(tmp_path: Path) -> None:
    from switchboard.router.replay import load_configs

    small_config(tmp_path)
    from_dir, from_file = load_configs(tmp_path).get("small-x"), load_configs(tmp_path / "small-x.yaml").get("small-x")
    assert from_dir is not None and from_file is not None
    first, second = intent_model(from_dir), intent_model(from_file)
    assert first is not None and second is not None and first.fingerprint == second.fingerprint
    text = "买了三天了还在广州"
    assert classify(from_dir, Facts(text=text)) == classify(from_file, Facts(text=text))
