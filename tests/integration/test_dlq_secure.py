"""`switchboard dlq` on a broker whose only client listener is SASL_SSL (SCRAM-SHA-512): from the SB_KAFKA_*
environment alone it lists and re-drives, and with a wrong password it stops with a clear error, exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from switchboard.contracts import InboundMessage
from switchboard.runtime.errors import BrokerUnavailable
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from tests.helpers import eventually
from tests.integration.secure_support import KAFKA_PASSWORD, KAFKA_USER, SaslSslKafka, make_pki
from tests.integration.test_dlq_command import dlq

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslSslKafka]:
    folder = tmp_path_factory.mktemp("dlq-secure")
    broker = SaslSslKafka(folder / "kafka", make_pki(folder / "pki"), {KAFKA_USER: KAFKA_PASSWORD})
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def _settings(kafka: SaslSslKafka, prefix: str) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap=kafka.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=KAFKA_USER,
        kafka_sasl_password=KAFKA_PASSWORD,
        kafka_ssl_ca_file=kafka.pki.ca,
        topic_prefix=prefix,
        service_name="router",
    )


def _env(settings: ServiceSettings, password: str = KAFKA_PASSWORD) -> dict[str, str]:
    return {
        "SB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SB_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SB_KAFKA_SASL_USERNAME": KAFKA_USER,
        "SB_KAFKA_SASL_PASSWORD": password,
        "SB_KAFKA_SSL_CA_FILE": str(settings.kafka_ssl_ca_file),
    }


async def test_list_and_redrive_over_sasl_ssl_and_a_wrong_password_is_refused(kafka: SaslSslKafka, prefix: str) -> None:
    settings = _settings(kafka, prefix)
    topics = Topics(prefix)

    async def created() -> bool:
        try:
            await ensure_topics(settings, topics.specs(1))
        except BrokerUnavailable:
            return False
        return True

    await eventually(created, 90, "topics created over SASL_SSL")
    producer = RecordProducer(settings)
    await producer.start()
    try:
        original = InboundMessage(message_id="m1", tenant_id="shop-a", conversation_id="c1")
        letter = await producer.dead_letter(
            source=topics.inbound,
            reason="no routing config for shop-a",
            error_type="invalid",
            original=original.SerializeToString(),
            key="c1",
            tenant_id="shop-a",
            partition=0,
            offset=0,
            original_headers={"sb-type": "switchboard.v1.InboundMessage"},
        )
    finally:
        await producer.stop()

    listed = await dlq(settings, "list", "--json", env=_env(settings))
    assert listed.code == 0, listed.err
    assert [row["dead_letter_id"] for row in listed.json()] == [letter.dead_letter_id]  # type: ignore[union-attr]
    redriven = await dlq(settings, "redrive", "--id", letter.dead_letter_id, env=_env(settings))
    assert redriven.code == 0, redriven.err
    assert redriven.out.startswith(f"re-driven      {letter.dead_letter_id}  to {topics.inbound}")

    refused = await asyncio.wait_for(dlq(settings, "list", env=_env(settings, "not-the-password")), 180)
    assert refused.code == 1
    assert "could not connect to Kafka" in refused.err and "Traceback" not in refused.err
