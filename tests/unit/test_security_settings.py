"""Kafka and Redis credentials and TLS files: checked when the settings are read, handed to every client by one
factory each (docs/security.md). The connections themselves are tested in tests/integration/test_secure_transport.py."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from switchboard.runtime.kafka import describe_connection, kafka_client_options
from switchboard.runtime.redis_client import redis_client, redis_security_options
from switchboard.runtime.settings import ServiceSettings
from tests.integration.secure_support import Pki, make_pki

SECRET = "s3cret-never-printed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made with openssl."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _sasl_ssl(pki: Pki, **overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "switchboard-router",
        "kafka_sasl_password": SECRET,
        "kafka_ssl_ca_file": pki.ca,
        **overrides,
    }
    return ServiceSettings(**values)  # type: ignore[arg-type]


def test_plaintext_is_the_default_and_needs_nothing_else() -> None:
    options = kafka_client_options(ServiceSettings(kafka_bootstrap="k:9092"))
    assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_options_carry_the_user_the_password_and_a_verifying_tls_context(pki: Pki) -> None:
    options = kafka_client_options(
        _sasl_ssl(pki, kafka_ssl_cert_file=pki.client_cert, kafka_ssl_key_file=pki.client_key)
    )
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "switchboard-router")
    assert options["sasl_plain_password"] == SECRET
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("switchboard test CA" in str(ca["subject"]) for ca in context.get_ca_certs())


def test_secrets_stay_out_of_reprs_log_fields_and_errors(pki: Pki) -> None:
    settings = _sasl_ssl(pki, redis_password=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(describe_connection(settings))
    with pytest.raises(ValidationError) as raised:
        _sasl_ssl(pki, kafka_sasl_username=None)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"kafka_sasl_username": None}, "needs SB_KAFKA_SASL_USERNAME and SB_KAFKA_SASL_PASSWORD"),
        ({"kafka_ssl_ca_file": "/nowhere/ca.crt"}, "SB_KAFKA_SSL_CA_FILE=/nowhere/ca.crt: no such file"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "SB_KAFKA_SSL_* files are set but SB_KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_a_kafka_misconfiguration_stops_at_start_naming_the_setting(
    pki: Pki, overrides: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError, match=says.replace("*", r"\*")):
        _sasl_ssl(pki, **overrides)


def test_files_that_are_no_pem_or_do_not_belong_together_are_refused(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "ca.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match=r"SB_KAFKA_SSL_CA_FILE=.*not a PEM CA certificate"):
        _sasl_ssl(pki, kafka_ssl_ca_file=junk)
    with pytest.raises(ValidationError, match="SB_KAFKA_SSL_CERT_FILE and SB_KAFKA_SSL_KEY_FILE go together"):
        _sasl_ssl(pki, kafka_ssl_cert_file=pki.client_cert)
    with pytest.raises(ValidationError, match="not a PEM certificate and its unencrypted key"):
        _sasl_ssl(pki, kafka_ssl_cert_file=pki.client_cert, kafka_ssl_key_file=pki.server_key)


def test_settings_come_from_the_environment_and_empty_values_are_unset(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SB_KAFKA_SSL_CA_FILE", str(pki.ca))
    monkeypatch.setenv("SB_KAFKA_SSL_CERT_FILE", "")  # an optional Secret key that is missing
    monkeypatch.setenv("SB_REDIS_USERNAME", "switchboard-router")
    monkeypatch.setenv("SB_REDIS_PASSWORD", SECRET)
    settings = ServiceSettings()
    assert settings.kafka_ssl_cert_file is None and settings.kafka_ssl_ca_file == pki.ca
    assert "sasl_mechanism" not in kafka_client_options(settings), "SSL alone sends no SASL"
    assert redis_security_options(settings) == {"username": "switchboard-router", "password": SECRET}


def test_redis_tls_files_need_a_rediss_url(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="REDIS_URL is not a rediss://"):
        ServiceSettings(redis_url="redis://r:6379/0", redis_ssl_ca_file=pki.ca)


def _redis_tls(pki: Pki, url: str) -> ServiceSettings:
    return ServiceSettings(
        redis_url=url,
        redis_username="switchboard-router",
        redis_password=SECRET,  # type: ignore[arg-type]
        redis_ssl_ca_file=pki.ca,
        redis_ssl_cert_file=pki.client_cert,
        redis_ssl_key_file=pki.client_key,
    )


async def test_one_server_and_every_cluster_node_get_the_user_and_the_tls_files(pki: Pki) -> None:
    expected = {
        "username": "switchboard-router",
        "password": SECRET,
        "ssl_ca_certs": str(pki.ca),
        "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key),
    }
    single = redis_client(_redis_tls(pki, "rediss://127.0.0.1:6380/0"), max_connections=4)
    cluster = redis_client(_redis_tls(pki, "rediss+cluster://127.0.0.1:7000"))
    try:
        assert isinstance(single, Redis) and not isinstance(single, RedisCluster)
        pool = single.connection_pool
        assert pool.connection_class is SSLConnection
        assert expected.items() <= pool.connection_kwargs.items()
        assert isinstance(cluster, RedisCluster)
        node_options = cluster.nodes_manager.connection_kwargs
        assert node_options["connection_class"] is SSLConnection
        assert expected.items() <= node_options.items()
    finally:
        await single.aclose()
        await cluster.aclose()
