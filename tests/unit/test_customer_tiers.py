"""Customer tiers without a lookup: contacts as the lookup sends them, the customers file, the static map."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.intake.customers import (
    CustomerContact,
    CustomerLookupSettings,
    CustomerTiers,
    Tier,
    contact_key,
    read_customers_file,
)


@pytest.mark.parametrize(
    ("kind", "raw", "key"),
    [
        ("email", " Li.Na@Customer.Example ", "li.na@customer.example"),
        ("phone", "+86 138-0013-8000", "13800138000"),
        ("phone", "0086 13800138000", "13800138000"),
        ("phone", "１３８００１３８０００", "13800138000"),
        ("phone", "010-6552 9988", "01065529988"),
        ("phone", "+44 20 7946 0018", "442079460018"),
    ],
)
def test_a_contact_is_sent_and_matched_in_one_form(kind: str, raw: str, key: str) -> None:
    assert contact_key(kind, raw) == key  # type: ignore[arg-type]


async def test_without_a_lookup_the_static_map_of_the_tenant_gives_the_tier(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(
        "tenants:\n"
        "  shop-a:\n"
        "    tiers: {'VIP@customer.example': 88VIP, '+86 138 0013 8000': gold}\n"
        "  shop-b:\n"
        "    lookup_url: http://127.0.0.1:1\n",
        encoding="utf-8",
    )
    tiers = CustomerTiers(CustomerLookupSettings(customer_lookup_file=path))
    assert tiers.lookup_url("shop-a") == "" and tiers.lookup_url("shop-b") == "http://127.0.0.1:1"

    async def tier(tenant: str, kind: str, address: str) -> Tier:
        return await tiers.tier_of(tenant, CustomerContact(kind, "c-1", address))  # type: ignore[arg-type]

    assert (await tier("shop-a", "email", "vip@customer.example")) == Tier("88VIP", "config")
    assert (await tier("shop-a", "phone", "13800138000")) == Tier("gold", "config")
    assert (await tier("shop-a", "email", "nobody@customer.example")) == Tier()
    assert (await tier("shop-c", "email", "vip@customer.example")) == Tier()
    # The deployment's lookup, when set, serves every tenant without its own: the static map is not used then.
    deployment = CustomerTiers(
        CustomerLookupSettings(customer_lookup_file=path, customer_lookup_url="http://crm.shop.internal")
    )
    assert deployment.lookup_url("shop-a") == "http://crm.shop.internal"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tenants: {shop-a: {tiers: {a@b.c: 88VIP}, extra: 1}}", "tenants.shop-a.extra"),
        ("tenants: {shop-a: {lookup_url: ftp://crm}}", "tenants.shop-a.lookup_url"),
        ("tenants: [shop-a]", "tenants"),
    ],
)
def test_a_malformed_customers_file_names_the_file_and_the_entry(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}: {says}"):
        read_customers_file(path)
