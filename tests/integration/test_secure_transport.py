"""Kafka over SASL_SSL (SCRAM-SHA-512) and Redis with an ACL user over TLS: the services work there from their
environment alone, and on wrong credentials they stop with a clear error or report not ready, without spinning.

The broker's only client listener is SASL_SSL and Redis listens only with TLS (its `default` user is off), so every
record and key the services move here went through the credentials and certificates of docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect

from switchboard.chat.signing import widget_token
from switchboard.gateway.tokens import issue_token
from switchboard.runtime.errors import BrokerUnavailable, TransientError
from switchboard.runtime.kafka import RecordProducer, ensure_topics
from switchboard.runtime.redis_client import redis_client, redis_unavailable_as_transient
from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard.state.agents import PresenceStore
from switchboard.state.keys import Keys
from switchboard.state.roster import load_roster
from switchboard_tools.stack.procs import free_port
from tests.helpers import eventually, service_env, start_service, stop_service
from tests.integration.gateway_support import Desk
from tests.integration.router_procs import REPO
from tests.integration.secure_support import (
    KAFKA_PASSWORD,
    KAFKA_USER,
    REDIS_PASSWORD,
    Pki,
    SaslSslKafka,
    TlsRedis,
    TlsRedisCluster,
    make_pki,
    secure_settings,
    security_env,
)
from tests.router_support import message

pytestmark = pytest.mark.broker

TENANT, AGENT = "shop-a", "a-lina"  # the dev roster's presales agent, loaded by presence
CHAT_SECRET = "secure-chat-secret-0123"
JWT_SECRET = "secure-test-jwt-secret-0123456789abcdef"
OPERATOR = "secure-operator-token-0001"
ORIGIN = "http://desk.test"
WRONG = "not-the-password-0000"
# Generous: a loaded CI machine starts four Python services side by side (each loads its models and configs).
STARTS_WITHIN_S = 150.0


@dataclass(frozen=True)
class Secured:
    """The secured broker and Redis of this module, and the certificates they were made with."""

    pki: Pki
    kafka: SaslSslKafka
    redis: TlsRedis


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Certificates, then the SASL_SSL broker and the TLS Redis, for the module."""
    folder = tmp_path_factory.mktemp("secure")
    pki = make_pki(folder / "pki")
    kafka = SaslSslKafka(folder / "kafka", pki, {KAFKA_USER: KAFKA_PASSWORD})
    redis = TlsRedis(folder / "redis", pki)
    try:
        redis.start()
        kafka.start()
        yield Secured(pki, kafka, redis)
    finally:
        kafka.stop()
        redis.stop()


@pytest.fixture
async def good(
    secured: Secured, prefix: str, routing_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServiceSettings]:
    """Settings with the right credentials on this test's topics (created over SASL_SSL once the broker takes
    clients) and keys; the service processes the test starts read `routing_dir` (their environment is this one's)."""
    settings = secure_settings(
        secured.kafka, secured.redis, topic_prefix=prefix, key_prefix=prefix.rstrip("."), service_name="test"
    )
    monkeypatch.setenv("SB_ROUTING_CONFIG_DIR", str(routing_dir))

    async def topics_created() -> bool:
        try:
            await ensure_topics(settings, Topics(prefix).specs(1))
        except BrokerUnavailable:
            return False
        return True

    await eventually(topics_created, 60, "topics created over SASL_SSL")
    yield settings


@pytest.fixture(scope="module")
def routing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev shop's routing alone (the flagship's classifier would add seconds of training to every start)."""
    folder = tmp_path_factory.mktemp("routing")
    shutil.copy(REPO / "config" / "routing" / f"{TENANT}.yaml", folder)
    return folder


def _env(settings: ServiceSettings, name: str, **extra: str) -> dict[str, str]:
    return service_env(
        settings,
        free_port(),
        SB_SERVICE_NAME=name,
        SB_SHUTDOWN_GRACE_S="3",
        **security_env(settings),
        **extra,
    )


async def test_a_chat_message_reaches_the_agents_desk_over_sasl_ssl_and_redis_tls(good: ServiceSettings) -> None:
    presence_env = _env(
        good, "presence", SB_OPERATOR_TOKENS=json.dumps([{"name": "ops", "token": OPERATOR, "tenants": [TENANT]}])
    )
    gateway_env = _env(good, "gateway", SB_JWT_SECRET=JWT_SECRET, SB_ALLOWED_ORIGINS=json.dumps([ORIGIN]))
    chat_env = _env(good, "chat", SB_CHAT_TENANT_SECRETS=json.dumps({TENANT: CHAT_SECRET}))
    router_env = _env(good, "router", SB_SWEEP_INTERVAL_S="0.3")
    results = await asyncio.gather(
        start_service("switchboard.presence", presence_env, STARTS_WITHIN_S),
        start_service("switchboard.router", router_env, STARTS_WITHIN_S),
        start_service("switchboard.gateway", gateway_env, STARTS_WITHIN_S),
        start_service("switchboard.chat", chat_env, STARTS_WITHIN_S),
        return_exceptions=True,
    )
    started = [r for r in results if not isinstance(r, BaseException)]
    try:
        for failed in results:
            if isinstance(failed, BaseException):
                raise failed
        presence, _, gateway, chat = (base for _, base in started)
        desk = await Desk.open(
            gateway.replace("http://", "ws://") + "/desk", issue_token(JWT_SECRET, TENANT, AGENT, 300), origin=ORIGIN
        )
        assert desk.snapshot["status"] == "available", desk.snapshot
        customer = "secure-customer-1"
        widget = f"{chat.replace('http://', 'ws://')}/chat/v1/ws?tenant={TENANT}&customer={customer}"
        async with connect(f"{widget}&token={widget_token(CHAT_SECRET.encode(), customer)}") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "message", "client_msg_id": "1", "text": "这件衣服有XL码吗"}))
            assert json.loads(await ws.recv())["type"] == "ack", "the broker acknowledged it over SASL_SSL"
            text = await _first_message_on_desk(desk)
        assert text == "这件衣服有XL码吗"
        # Presence reads the agent back from the TLS Redis: logged in by the gateway, holding the router's claim.
        async with httpx.AsyncClient(base_url=presence, headers={"Authorization": f"Bearer {OPERATOR}"}) as http:
            where = await http.get(f"/v1/operator/tenants/{TENANT}/agents")
        assert where.status_code == 200, where.text
        lina = next(a for a in where.json()["agents"] if a["agent_id"] == AGENT)
        assert (lina["status"], lina["used"].get("chat")) == ("available", 1), lina
        await desk.close()
    finally:
        for proc, _ in started:
            await stop_service(proc)


async def _first_message_on_desk(desk: Desk) -> str:
    """Accept the offer (if the group offers first) and return the text of the first message, which comes with the
    assignment."""
    while True:
        [event] = await desk.events(1, timeout=30)
        if event["event"] == "offer":
            answer = await desk.command({"type": "accept", "id": "a1", "conversation_id": event["conversation_id"]})
            assert answer["type"] == "result", answer
        elif event["event"] == "assigned":
            return str(event["message"]["text"])


async def _exits(module: str, env: dict[str, str], log: Path, timeout: float = 45.0) -> tuple[int, str]:
    """Run a service that must refuse to start: its exit code and what it logged (it must not hang)."""
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=sink, stderr=sink, cwd=str(REPO)
        )
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    finally:
        await stop_service(proc)
    return code, await asyncio.to_thread(log.read_text, errors="replace")


async def test_the_state_layer_works_on_a_redis_cluster_over_tls_and_refuses_a_wrong_password(
    secured: Secured, good: ServiceSettings, tmp_path: Path
) -> None:
    cluster = TlsRedisCluster(tmp_path / "cluster", secured.pki)
    try:
        await asyncio.to_thread(cluster.start)
        on_cluster = good.model_copy(update={"redis_url": cluster.url})
        redis = redis_client(on_cluster)
        producer = RecordProducer(good)
        await producer.start()
        try:
            # The roster's Lua scripts on every tenant's slot, each record acknowledged over SASL_SSL.
            store = PresenceStore(redis, Keys(good.key_prefix), producer)
            await store.load_roster(load_roster())
            assert {a.agent_id for a in await store.list_agents(TENANT)} >= {AGENT}
            assert len(redis.get_nodes()) == 3, "every node reached over TLS as the ACL user"  # type: ignore[attr-defined]
        finally:
            await producer.stop()
            await redis.aclose()
        wrong = redis_client(on_cluster.model_copy(update={"redis_password": SecretStr(WRONG)}))
        try:
            refused = pytest.raises(TransientError, match="invalid username-password pair")
            with refused, redis_unavailable_as_transient():
                await wrong.ping()
        finally:
            await wrong.aclose()
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_wrong_credentials_are_refused_with_a_clear_error_and_no_crash_loop(
    secured: Secured, good: ServiceSettings, tmp_path: Path
) -> None:
    """Each case in its own processes, side by side (they share nothing but the servers)."""
    async with asyncio.timeout(2 * STARTS_WITHIN_S):
        await asyncio.gather(
            _kafka_password_stops_the_adapter(good, tmp_path),
            _unknown_ca_stops_the_adapter(
                good.model_copy(update={"kafka_ssl_ca_file": secured.pki.other_ca}), tmp_path
            ),
            _redis_password_makes_the_router_not_ready(good, tmp_path),
            _redis_password_stops_presence_at_start(good, tmp_path),
        )


async def _kafka_password_stops_the_adapter(good: ServiceSettings, tmp_path: Path) -> None:
    wrong = good.model_copy(update={"kafka_sasl_password": SecretStr(WRONG)})
    code, text = await _exits("switchboard.chat", _env(wrong, "chat"), tmp_path / "kafka-password.log")
    assert code != 0, text[-2000:]
    refused = [json.loads(line) for line in text.splitlines() if '"kafka_connect_failed"' in line]
    assert refused, text[-2000:]
    assert "SaslAuthenticationFailed" in refused[0]["reason"], refused[0]
    assert (refused[0]["sasl_username"], refused[0]["security_protocol"]) == (KAFKA_USER, "SASL_SSL")
    assert WRONG not in text and KAFKA_PASSWORD not in text, "no password in the logs"


async def _unknown_ca_stops_the_adapter(other_ca: ServiceSettings, tmp_path: Path) -> None:
    code, text = await _exits("switchboard.chat", _env(other_ca, "chat"), tmp_path / "kafka-ca.log")
    assert code != 0 and '"kafka_connect_failed"' in text, text[-2000:]
    assert "CERTIFICATE_VERIFY_FAILED" in text, text[-2000:]


async def _exits(module: str, env: dict[str, str], log: Path, timeout: float = STARTS_WITHIN_S) -> tuple[int, str]:
    """Run a service that must refuse to start: its exit code and what it logged (it must not hang)."""
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env, stdout=sink, stderr=sink)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    finally:
        await stop_service(proc)
    return code, await asyncio.to_thread(log.read_text, errors="replace")


async def _redis_password_makes_the_router_not_ready(good: ServiceSettings, tmp_path: Path) -> None:
    """Redis refusing the router's credentials: it stays up and not ready, retrying at its longest backoff, and
    says why; the Kafka side still works, so the record waits in the topic instead of being lost."""
    wrong = good.model_copy(update={"redis_password": SecretStr(WRONG)})
    env = _env(wrong, "router", SB_RETRY_BACKOFF_S="0.05", SB_RETRY_BACKOFF_MAX_S="1", SB_TRANSIENT_RETRIES="2")
    log = tmp_path / "router.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "switchboard.router", env=env, stdout=sink, stderr=sink, cwd=str(REPO)
        )
    producer = RecordProducer(good)
    await producer.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env['SB_HTTP_PORT']}") as http:
            await eventually(_serving(http, proc, log), STARTS_WITHIN_S, "router serving")
            await producer.send(producer.topics.inbound, "c-secure", message(TENANT, "c-secure", "m1", "在吗"))

            async def not_ready() -> bool:
                return (await http.get("/readyz")).status_code == 503

            await eventually(not_ready, 30, "router not ready on Redis refusing its credentials")
            before = _retries(log)
            await asyncio.sleep(3)
            assert _retries(log) - before <= 4, "it waits the longest backoff (1 s) between attempts"
            assert proc.returncode is None, "it stays up, not ready, and retries: no crash loop"
        text = await asyncio.to_thread(log.read_text)
        assert "invalid username-password pair" in text, text[-2000:]
        assert WRONG not in text and REDIS_PASSWORD not in text, "no password in the logs"
    finally:
        await producer.stop()
        await stop_service(proc)


def _serving(http: httpx.AsyncClient, proc: asyncio.subprocess.Process, log: Path) -> Callable[[], Awaitable[bool]]:
    async def serving() -> bool:
        assert proc.returncode is None, f"router exited with {proc.returncode}, see {log}"
        try:
            await http.get("/healthz")
        except httpx.TransportError:
            return False
        return True

    return serving


def _retries(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"transient_error"' in line)


async def _redis_password_stops_presence_at_start(good: ServiceSettings, tmp_path: Path) -> None:
    """Presence loads the roster into Redis before it serves: refused credentials stop it there."""
    wrong = good.model_copy(update={"redis_password": SecretStr(WRONG)})
    code, text = await _exits("switchboard.presence", _env(wrong, "presence"), tmp_path / "presence.log")
    assert code != 0 and "invalid username-password pair" in text, text[-2000:]
    assert WRONG not in text and REDIS_PASSWORD not in text, "no password in the logs"
