"""Member tiers of e-mail and phone customers, from the shop's customer lookup (docs/customer-lookup.md).

A mail or a call carries no tier the shop vouched for, so the adapter asks the shop's system, through the shared
lookup plumbing (runtime/http_lookup.py: deadline, breaker, metrics): `POST /v1/customers/lookup` with the
customer's contact. Answers (a tier, or "not a member" on 404) are cached per customer for a while; a failure is
not cached and costs the message its tier, never its acceptance, and never more than the timeout.

Where a tenant has no lookup (neither its own `lookup_url` in the customers file nor the deployment's
`SB_CUSTOMER_LOOKUP_URL`), the file's static `tiers` of that tenant (contact → tier) are used instead.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchboard.runtime.http_lookup import HttpLookups, LookupMetrics
from switchboard.runtime.settings import ServiceSettings
from switchboard.state.metrics import LabelBounds

METRICS = LookupMetrics(
    name="customer_lookup",
    lookups=Counter(
        "sb_customer_lookups_total",
        "Customer (tier) lookups of the adapters by tenant and outcome",
        ["tenant", "outcome"],
    ),
    seconds=Histogram(
        "sb_customer_lookup_seconds",
        "Duration of customer lookups that reached the shop's system",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2),
    ),
    breaker_state=Gauge(
        "sb_customer_lookup_breaker_state", "Customer-lookup circuit breaker: 0 closed, 1 half-open, 2 open", ["system"]
    ),
    breaker_opened=Counter(
        "sb_customer_lookup_breaker_opened_total", "Times a customer lookup's breaker opened", ["system"]
    ),
)
PATH = "/v1/customers/lookup"
# Entries kept in each process's cache (the least recently used go first).
CACHE_ENTRIES = 100_000
ContactKind = Literal["email", "phone"]
TierSource = Literal["lookup", "config", ""]


class CustomerLookupSettings(ServiceSettings):
    """The customer lookup of an adapter (e-mail, phone): env `SB_CUSTOMER_LOOKUP_*`."""

    # The deployment's customer system, for every tenant without its own `lookup_url` in the file.
    customer_lookup_url: str = ""
    # YAML/JSON `{tenants: {<tenant>: {lookup_url: ..., tiers: {<e-mail or phone>: <tier>}}}}`.
    customer_lookup_file: Path | None = None
    # The whole lookup (connect, send, answer): the SMTP or HTTP answer waits at most this long for it.
    customer_lookup_timeout_s: float = Field(default=1.0, gt=0, le=10)
    # How long an answer (a tier, or not a member) is used for the same customer before asking again.
    customer_lookup_cache_s: float = Field(default=300.0, ge=0)
    customer_lookup_breaker_failures: int = Field(default=5, ge=1)
    customer_lookup_breaker_cooldown_s: float = Field(default=30.0, gt=0)


class _TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lookup_url: str = Field(default="", pattern=r"^(https?://.+)?$")
    tiers: dict[str, str] = Field(default_factory=dict)


class _CustomersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: dict[str, _TenantEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class CustomerContact:
    """Who to look up: switchboard's customer id (a hash) and the raw contact the shop's system knows them by."""

    kind: ContactKind
    customer_id: str
    address: str


@dataclass(frozen=True)
class Tier:
    """A customer's member tier and where it came from ("" and "" when there is none)."""

    member_tier: str = ""
    source: TierSource = ""


def contact_key(kind: ContactKind, address: str) -> str:
    """A contact as the lookup sends it and the static map is keyed: an e-mail address lower-cased; a phone
    number as its digits (full-width too), the last 11 of a mainland mobile (+86 and 0086 dropped)."""
    if kind == "email":
        return address.strip().lower()
    digits = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", address))
    if len(digits) > 11 and digits[-11] == "1" and digits[:-11] in ("86", "0086"):
        return digits[-11:]
    return digits


def read_customers_file(path: Path) -> dict[str, _TenantEntry]:
    """The tenants of a customers file; ValueError naming the file and the entry when it is malformed."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    try:
        parsed = _CustomersFile.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from exc
    return parsed.tenants


def _tier_answer(body: object) -> str | None:
    """The tier of a 200 answer ("" for a customer without one), or None when it is not the documented JSON."""
    if not isinstance(body, dict):
        return None
    tier = body.get("member_tier", "")
    if tier is None:
        return ""
    return tier.strip()[:64] if isinstance(tier, str) else None


class CustomerTiers:
    """Member tiers by customer: the shop's lookup with a per-customer cache, else the static map, else none."""

    def __init__(
        self,
        settings: CustomerLookupSettings,
        clock: Callable[[], float] = time.monotonic,
        known_tenants: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.tenants = read_customers_file(settings.customer_lookup_file) if settings.customer_lookup_file else {}
        # `sb_customer_lookups_total`'s tenant label: the adapter's configured tenants and the customers file's; a
        # deployment-wide lookup URL is asked for any tenant a sender names, which is counted as "unknown".
        self.bounds = LabelBounds.of_tenants({*known_tenants, *self.tenants})
        # The static map by contact as contact_key writes it, so "+86 138 0013 8000" in the file finds 13800138000.
        self._static = {
            tenant: {contact_key("email" if "@" in k else "phone", k): v for k, v in entry.tiers.items()}
            for tenant, entry in self.tenants.items()
        }
        self._clock = clock
        self._http = HttpLookups(
            METRICS,
            failures=settings.customer_lookup_breaker_failures,
            cooldown_s=settings.customer_lookup_breaker_cooldown_s,
            clock=clock,
        )
        self._cache: OrderedDict[tuple[str, str], tuple[float, Tier]] = OrderedDict()

    def lookup_url(self, tenant_id: str) -> str:
        """The customer system a tenant's customers are looked up in ("" for none)."""
        entry = self.tenants.get(tenant_id)
        return (entry.lookup_url if entry else "") or self.settings.customer_lookup_url

    async def tier_of(self, tenant_id: str, contact: CustomerContact) -> Tier:
        """The customer's tier: within the lookup timeout at most; no tier when the lookup fails."""
        url = self.lookup_url(tenant_id)
        if not url:
            listed = self._static.get(tenant_id, {}).get(contact_key(contact.kind, contact.address), "")
            return Tier(listed, "config") if listed else Tier()
        key = (tenant_id, contact.customer_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        tier = await self._ask(url, tenant_id, contact)
        if tier is not None:
            self._remember(key, tier)
        return tier or Tier()

    async def _ask(self, url: str, tenant_id: str, contact: CustomerContact) -> Tier | None:
        """The lookup's answer as a Tier, or None when it failed (then nothing is cached)."""
        # POST: the raw contact travels in the body, never in a URL that access logs and proxies keep.
        body = {
            "tenant_id": tenant_id,
            "channel": contact.kind,
            "customer_id": contact.customer_id,
            contact.kind: contact_key(contact.kind, contact.address),
        }
        answer = await self._http.fetch(
            url,
            PATH,
            self.bounds.tenant(tenant_id),
            _tier_answer,
            timeout_s=self.settings.customer_lookup_timeout_s,
            params={"tenant_id": tenant_id},
            json_body=body,
        )
        if answer.outcome == "found":
            return Tier(answer.value, "lookup") if answer.value else Tier()
        return Tier() if answer.outcome == "not_found" else None

    def _remember(self, key: tuple[str, str], tier: Tier) -> None:
        ttl = self.settings.customer_lookup_cache_s
        if ttl <= 0:
            return
        self._cache[key] = (self._clock() + ttl, tier)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._http.close()
