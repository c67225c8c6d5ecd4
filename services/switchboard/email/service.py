"""Wiring of the e-mail adapter: SMTP server, webhook route, reply sender and acknowledgement sender on one
ServiceRuntime."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.contracts import Channel
from switchboard.email.ack import CONSUMER_NAME as ACKS_CONSUMER
from switchboard.email.ack import AckSender
from switchboard.email.inbox import EmailInbox
from switchboard.email.outbound import CONSUMER_NAME, ReplySender
from switchboard.email.settings import EmailSettings
from switchboard.email.smtp import SmtpServer
from switchboard.email.tenants import TenantDirectory
from switchboard.email.threads import ThreadBook
from switchboard.email.webhook import install_webhook
from switchboard.intake.accept import Intake
from switchboard.intake.customers import CustomerTiers
from switchboard.intake.language import warm_language_detector
from switchboard.intake.tally import InboundTally
from switchboard.runtime.consumer import BatchConsumer
from switchboard.runtime.logs import get_logger
from switchboard.runtime.redis_client import redis_client
from switchboard.runtime.service import ServiceRuntime
from switchboard.state.keys import Keys

log = get_logger(__name__)

# The channel the e-mail consumers handle: other channels' replies and routing events are skipped undecoded.
EMAIL = Channel.Name(Channel.CHANNEL_EMAIL)


@dataclass
class EmailService:
    """The running parts, for tests that need the SMTP port or the inbox."""

    runtime: ServiceRuntime
    inbox: EmailInbox
    smtp: SmtpServer
    replies: BatchConsumer
    acks: BatchConsumer


async def build(settings: EmailSettings) -> ServiceRuntime:
    """A ready-to-serve e-mail adapter: SMTP listening, webhook mounted, reply consumer started."""
    return (await build_service(settings)).runtime


async def build_service(settings: EmailSettings) -> EmailService:
    """`build`, with the parts tests reach for (the SMTP port, the inbox)."""
    await warm_language_detector()  # before the SMTP port opens: no mail waits for the models
    runtime = ServiceRuntime(settings)
    redis = redis_client(settings)
    runtime.add_closer(redis.aclose)
    producer = await runtime.start_producer()
    keys = Keys(settings.key_prefix)
    if not settings.customer_key():
        log.warning("email_customer_key_unset", hint="set SB_EMAIL_CUSTOMER_KEY in production")
    book = ThreadBook(redis, keys, settings.thread_ttl_s, settings.contact_seal(), settings.customer_key())
    subdomain_tenants = settings.subdomain_tenants()
    tenants = TenantDirectory(
        settings.tenant_addresses, settings.tenant_domains, settings.tenant_subdomain_of, subdomain_tenants
    )
    known = tenants.known_tenants(sorted(subdomain_tenants))
    tiers = CustomerTiers(settings, known_tenants=known)
    runtime.add_closer(tiers.close)
    tally = InboundTally("email", known)
    intake = Intake(producer, redis, keys, tally)
    runtime.add_closer(intake.flush)
    inbox = EmailInbox(settings, intake, book, tenants, tiers)
    install_webhook(runtime.app, inbox)
    smtp = SmtpServer(settings, inbox)
    await smtp.start()
    runtime.add_stopper(smtp.stop_intake)
    runtime.add_closer(smtp.close)
    replies = BatchConsumer(
        settings,
        topics=[producer.topics.outbound],
        group_id=f"{settings.topic_prefix}{CONSUMER_NAME}",
        handler=ReplySender(settings, book, keys).handle,
        producer=producer,
        channels={EMAIL},
    )
    await runtime.add_consumer("replies", replies)
    # Its own group: acknowledgements wait neither for replies nor replies for them.
    acks = BatchConsumer(
        settings,
        topics=[producer.topics.routing],
        group_id=f"{settings.topic_prefix}{ACKS_CONSUMER}",
        handler=AckSender(settings, book, keys).handle,
        producer=producer,
        channels={EMAIL},
    )
    await runtime.add_consumer("acks", acks)
    return EmailService(runtime, inbox, smtp, replies, acks)
