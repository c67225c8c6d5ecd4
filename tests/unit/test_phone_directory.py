"""The phone directory: tenants by API key, hotlines by number, and a hotline's language."""

from __future__ import annotations

import pytest

from switchboard.phone.directory import PhoneDirectory
from switchboard.phone.records import new_call
from switchboard.phone.settings import DEV_DIRECTORY
from switchboard.phone.wire import CallStarted


def test_directory_maps_keys_and_numbers_to_tenants() -> None:
    directory = PhoneDirectory.from_mapping(
        {
            "tenants": [
                {"tenant_id": "shop-a", "numbers": ["400-800-1001"], "api_keys": ["k-a"]},
                {
                    "tenant_id": "shop-b",
                    "numbers": ["021 6123 4567"],
                    "api_key_sha256": ["d9b6a8a3b5e1f0e6b3a5f3e0e2c8a4f1b7e6d5c4b3a2918070605040302010ff"],
                },
            ]
        }
    )
    assert directory.tenant_for_key("k-a") == "shop-a"
    assert directory.tenant_for_key("k-b") is None
    assert directory.tenant_for_key(None) is None
    assert directory.tenant_for_number("4008001001") == "shop-a"
    assert directory.tenant_for_number("+021-61234567") == "shop-b"
    assert directory.tenant_for_number("110") is None


def test_a_number_or_key_listed_for_two_tenants_is_a_config_error() -> None:
    twice = [{"tenant_id": "a", "numbers": ["4008001001"]}, {"tenant_id": "b", "numbers": ["400-800-1001"]}]
    with pytest.raises(ValueError, match="two tenants"):
        PhoneDirectory.from_mapping({"tenants": twice})
    with pytest.raises(ValueError, match="bad tenant_id"):
        PhoneDirectory.from_mapping({"tenants": [{"tenant_id": "{x}"}]})


def test_the_dev_directory_loads() -> None:
    directory = PhoneDirectory.load(DEV_DIRECTORY)
    assert directory.tenant_for_key("dev-phone-shop-a") == "shop-a"


def test_a_hotline_language_fills_calls_whose_platform_sends_none() -> None:
    directory = PhoneDirectory.load(DEV_DIRECTORY)
    assert directory.language_of("4008001009") == "en"
    assert directory.language_of("400-800-1001") == "zh-CN"
    assert directory.language_of("400-800-2002") == ""

    def language(number: str, tag: str = "") -> str:
        started = CallStarted(type="call.started", call_id="c", dialled_number=number, language=tag)
        return new_call("shop-a", started, directory.language_of(number)).language

    assert [language("4008001009"), language("4008001001"), language("4008002002")] == ["en", "zh", ""]
    assert language("4008001009", "zh-CN") == "zh", "the platform's tag wins"
