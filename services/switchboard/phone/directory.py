"""The phone directory: which tenant an API key speaks for, and which dialled numbers belong to which tenant.

A sender (a shop's telephony platform) authenticates with its tenant's API key; the key decides the tenant of
everything it sends, and a call's dialled number must be one of that tenant's numbers. So a key of shop A can
neither open a call on shop B's hotline nor touch shop B's calls (call state is kept per tenant).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def number_digits(number: str) -> str:
    """A dialled number as digits only ("400-800-1001" and "4008001001" are the same hotline)."""
    return re.sub(r"[^0-9]", "", number)


def _key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class PhoneDirectory:
    """Tenants by API key hash and by dialled number."""

    tenant_by_key_hash: dict[str, str] = field(default_factory=dict)
    tenant_by_number: dict[str, str] = field(default_factory=dict)
    # A hotline's language tag ("zh-CN", "en", "ja" ...) for calls whose platform sends none (an English hotline for
    # cross-border buyers routes to the 跨境 group before anyone said a word).
    language_by_number: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: object) -> PhoneDirectory:
        """Build from the parsed YAML document; raises ValueError on a malformed or ambiguous directory."""
        if not isinstance(data, dict) or not isinstance(data.get("tenants"), list):
            raise ValueError("phone directory: expected a mapping with a `tenants` list")
        by_key: dict[str, str] = {}
        by_number: dict[str, str] = {}
        languages: dict[str, str] = {}
        for entry in data["tenants"]:
            tenant = str(entry.get("tenant_id", ""))
            if not tenant or "{" in tenant or "}" in tenant:
                raise ValueError(f"phone directory: bad tenant_id {tenant!r}")
            hashes = [_key_hash(str(k)) for k in entry.get("api_keys", [])]
            hashes += [str(h).lower() for h in entry.get("api_key_sha256", [])]
            for h in hashes:
                if by_key.setdefault(h, tenant) != tenant:
                    raise ValueError("phone directory: one API key is listed for two tenants")
            for number in entry.get("numbers", []):
                # A number is "400-800-1001" or {"number": "400-800-1001", "language": "en"}.
                spec = number if isinstance(number, dict) else {"number": number}
                digits = number_digits(str(spec.get("number", "")))
                if not digits:
                    raise ValueError(f"phone directory: bad number {number!r} of {tenant}")
                if by_number.setdefault(digits, tenant) != tenant:
                    raise ValueError(f"phone directory: number {spec['number']} is listed for two tenants")
                language = str(spec.get("language", entry.get("language", "")))
                if language:
                    languages[digits] = language
        return cls(by_key, by_number, languages)

    @classmethod
    def load(cls, path: Path) -> PhoneDirectory:
        """Read the directory file."""
        return cls.from_mapping(yaml.safe_load(path.read_text(encoding="utf-8")))

    def tenants(self) -> set[str]:
        """Every tenant of the directory."""
        return {*self.tenant_by_key_hash.values(), *self.tenant_by_number.values()}

    def tenant_for_key(self, api_key: str | None) -> str | None:
        """The tenant an API key belongs to, or None (compared by hash, in constant time per candidate)."""
        if not api_key:
            return None
        wanted = _key_hash(api_key)
        for known, tenant in self.tenant_by_key_hash.items():
            if hmac.compare_digest(known, wanted):
                return tenant
        return None

    def tenant_for_number(self, dialled_number: str) -> str | None:
        """The tenant that owns a dialled hotline, or None."""
        return self.tenant_by_number.get(number_digits(dialled_number))

    def language_of(self, dialled_number: str) -> str:
        """The configured language tag of a hotline ("" when none)."""
        return self.language_by_number.get(number_digits(dialled_number), "")
