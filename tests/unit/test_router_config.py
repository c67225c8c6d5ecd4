"""Routing config: the shipped examples load; errors name file:line; a broken edit keeps the old config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from switchboard.router.reload import ConfigStore
from switchboard.routing.config import ConfigError, load_config_file, parse_config

MINIMAL = """\
tenant: shop-x
default_group: service
skill_groups:
  - name: service
rules:
  - name: refund
    group: service
    match:
      keywords: [退款]
"""


def test_shipped_examples_load(repo_root: Path) -> None:
    configs = {load_config_file(p).tenant for p in (repo_root / "config" / "routing").glob("*.yaml")}
    assert {"tmall-flagship", "small-shop"} <= configs


def test_unknown_group_is_rejected_with_the_line_of_the_rule() -> None:
    text = MINIMAL.replace("    group: service\n    match", "    group: nowhere\n    match")
    with pytest.raises(ConfigError, match=r"^shop\.yaml:7: rules\.0\.group: .*unknown group 'nowhere'"):
        parse_config(text, "shop.yaml")


def test_wrong_type_points_at_its_line() -> None:
    text = MINIMAL + "offers:\n  mode: auto\n  timeout_s: soon\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "shop.yaml")
    assert str(caught.value).startswith("shop.yaml:12: offers.timeout_s:")


def test_bad_regex_and_bad_yaml_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"shop\.yaml:9: .*bad regular expression"):
        parse_config(MINIMAL.replace("keywords: [退款]", "patterns: ['退(款']"), "shop.yaml")
    with pytest.raises(ConfigError, match=r"shop\.yaml:4: not valid YAML"):
        parse_config("tenant: a\nskill_groups:\n  - name: [x\n", "shop.yaml")


def test_reload_takes_a_good_edit_and_keeps_the_old_config_on_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "shop-x.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    store = ConfigStore(tmp_path)
    assert store.poll()
    assert store.get("shop-x") is not None
    assert store.get("shop-x").rules[0].priority == 0  # type: ignore[union-attr]

    path.write_text(MINIMAL.replace("    group: service\n    match", "    group: service\n    priority: 7\n    match"))
    os.utime(path, (1, 1))
    assert store.poll()
    assert store.get("shop-x").rules[0].priority == 7  # type: ignore[union-attr]

    path.write_text(MINIMAL.replace("default_group: service", "default_group: missing"))
    os.utime(path, (2, 2))
    assert not store.poll()
    assert store.get("shop-x").rules[0].priority == 7  # type: ignore[union-attr]
    assert "shop-x.yaml:" in store.errors[path]

    path.unlink()
    assert store.poll()
    assert store.get("shop-x") is None
