"""Settings of the e-mail adapter (env prefix `SB_`, e.g. `SB_SMTP_PORT`, `SB_TENANT_DOMAINS='{"a.example": "a"}'`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, SecretStr

from switchboard.intake.customers import CustomerLookupSettings
from switchboard.runtime.logs import get_logger
from switchboard.runtime.pii import ContactSeal

log = get_logger(__name__)

# Seals reply contacts when SB_EMAIL_CUSTOMER_KEY is unset (development only: anyone with the source has it).
DEV_CUSTOMER_KEY = b"switchboard-dev-email-customer-key"

DEV_WEBHOOK_SECRETS = Path(__file__).resolve().parents[3] / "config" / "email" / "dev-webhook-secrets.yaml"

REPO_ROUTING_DIR = Path(__file__).resolve().parents[3] / "config" / "routing"


class EmailSettings(CustomerLookupSettings):
    """Where the adapter listens, which tenant a recipient belongs to, how replies leave, and the input limits."""

    service_name: str = "email"
    smtp_host: str = "0.0.0.0"
    smtp_port: int = 2525
    # The name the SMTP server greets with and the domain of the Message-IDs it makes for agents' replies.
    smtp_hostname: str = "switchboard.local"
    smtp_idle_timeout_s: float = 60.0
    # Outgoing mail: the relay every agent reply is handed to.
    relay_host: str = "127.0.0.1"
    relay_port: int = 25
    relay_timeout_s: float = 10.0
    relay_username: str | None = None
    relay_password: str | None = None
    relay_starttls: bool = False
    # Tenant by recipient: an exact address wins over its domain; `<tenant>.<tenant_subdomain_of>` works without
    # any table (e.g. service@shop-a.inbound.switchboard.local belongs to shop-a).
    tenant_addresses: dict[str, str] = Field(default_factory=dict)
    tenant_domains: dict[str, str] = Field(default_factory=dict)
    tenant_subdomain_of: str = "inbound.switchboard.local"
    # Shops reached by subdomain addressing, e.g. SB_EMAIL_TENANTS='["shop-a","shop-b"]': mail to any other
    # subdomain is refused at RCPT (550). Empty: the shops of the repository's config/routing (development).
    email_tenants: list[str] = Field(default_factory=list)
    # The From of agents' replies when the conversation does not say which shop address the customer wrote to.
    reply_from_local_part: str = "service"
    # The HTTP webhook: a shop signs what it posts with its secret (runtime/signing.py), a JSON object
    # `{"shop-a": "…"}`; a shop without one cannot use the webhook. With none set, the development secrets of
    # config/email/dev-webhook-secrets.yaml are used (and a warning is logged).
    email_webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    email_webhook_tolerance_s: int = 300
    # Secret key for customers' addresses: the reply contact kept in Redis holds the address sealed with it
    # (runtime/pii.py ContactSeal), and customer and conversation ids made from an address are keyed hashes of it.
    # Empty (development): a fixed development key seals (a warning is logged) and the ids are unkeyed hashes,
    # which anyone holding records can reverse by hashing guessed addresses; set it in production.
    email_customer_key: SecretStr = SecretStr("")
    # Input limits: over them a message is refused (SMTP 552/554, HTTP 413/422) and dead-lettered.
    max_message_bytes: int = 10 * 1024 * 1024
    max_attachment_bytes: int = 8 * 1024 * 1024
    max_parts: int = 100
    max_depth: int = 8
    # How long a Message-ID keeps pointing at its conversation (replies after that open a new one).
    thread_ttl_s: int = 90 * 24 * 3600
    # Acknowledgement mails (ack.py), while the tenant's surge profile in force has `customer_updates.email`.
    # Language: the customer's mail's when it is Chinese or English, else the shop's (`{"shop-a": "en"}`), else
    # the default.
    email_ack_languages: dict[str, Literal["zh", "en"]] = Field(default_factory=dict)
    email_ack_default_language: Literal["zh", "en"] = "zh"
    # The expected answer time is the router's estimate for the group's e-mail queue (state/figures.py); before
    # the router wrote one, queue position times this.
    email_seconds_per_queue_position: float = 600.0
    # A QUEUED decision is acted on once it is this old: a conversation the router assigns right after queueing it
    # (a plan that found an agent's room changed is queued, then drained at once) is not a waiting customer.
    email_ack_grace_s: float = 2.0
    # A replica sending an acknowledgement holds the conversation's claim this long; if it dies meanwhile the
    # claim expires and the redelivered trigger sends the mail then.
    email_ack_claim_s: int = 60

    def webhook_secrets(self) -> dict[str, bytes]:
        """Each shop's webhook secret (empty ones left out): the environment's, else the development file's."""
        if self.email_webhook_secrets:
            found = {k: v.get_secret_value() for k, v in self.email_webhook_secrets.items()}
        elif DEV_WEBHOOK_SECRETS.exists():
            log.warning("email_dev_webhook_secrets", path=str(DEV_WEBHOOK_SECRETS), hint="set SB_EMAIL_WEBHOOK_SECRETS")
            found = dev_webhook_secrets()
        else:
            found = {}
        return {tenant: secret.encode() for tenant, secret in found.items() if secret}

    def customer_key(self) -> bytes:
        """The key of customers' addresses (b"" when unset)."""
        return self.email_customer_key.get_secret_value().encode()

    def contact_seal(self) -> ContactSeal:
        """What seals the reply contact's address: the customer key, else the development key."""
        return ContactSeal(self.customer_key() or DEV_CUSTOMER_KEY)

    def subdomain_tenants(self) -> frozenset[str]:
        """The shops `<tenant>.<tenant_subdomain_of>` addresses reach."""
        if self.email_tenants:
            return frozenset(self.email_tenants)
        return frozenset(path.stem for path in REPO_ROUTING_DIR.glob("*.yaml"))


def dev_webhook_secrets() -> dict[str, str]:
    """The development secrets of config/email/dev-webhook-secrets.yaml (the dev stack's shops)."""
    data = yaml.safe_load(DEV_WEBHOOK_SECRETS.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in (data.get("secrets") or {}).items()}
