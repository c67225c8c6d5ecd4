"""CPython's own e-mail test corpus (Lib/test/test_email/data/msg_*.txt) through the real SMTP server and webhook.

Every message either becomes a record, or is refused with a 5xx and a DLQ record, or (auto-replies, bounces, list
mail) is taken with 250 and counted; none gets a 451, crashes or hangs the adapter.

The corpus is found from the running interpreter's `test` package (pyenv and python.org builds ship it), then in
the usual Debian path (`libpython3.11-testsuite`: /usr/lib/python3.11/test/test_email/data).
"""

from __future__ import annotations

import asyncio
import collections
import glob
import hashlib
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

from switchboard.contracts import DeadLetter, InboundMessage
from switchboard.email.service import EmailService
from switchboard.runtime.topics import Topics
from tests.conftest import topic_settings
from tests.integration.email_support import email_settings, read_all, running_email, signed_mail_headers

pytestmark = pytest.mark.broker

LANES = 6


def corpus_dir() -> Path | None:
    """Where this machine keeps CPython's e-mail test messages, if anywhere."""
    candidates: list[str] = []
    try:
        import test

        candidates.append(os.path.join(os.path.dirname(test.__file__), "test_email", "data"))
    except ImportError:
        pass
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates += [f"/usr/lib/python{version}/test/test_email/data"]
    candidates += sorted(glob.glob("/usr/lib/python3*/test/test_email/data"))
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/lib/python3*/test/test_email/data")))
    for candidate in candidates:
        if glob.glob(os.path.join(candidate, "msg_*.txt")):
            return Path(candidate)
    return None


CORPUS = corpus_dir()
needs_corpus = pytest.mark.skipif(
    CORPUS is None,
    reason="CPython's e-mail test corpus is not on this machine (apt-get install libpython3.11-testsuite)",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def corpus_service(kafka_bootstrap: str, redis_url: str) -> AsyncIterator[tuple[EmailService, Topics]]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix)
    base = await topic_settings(kafka_bootstrap, redis_url, prefix)
    async with running_email(email_settings(base)) as service:
        yield service, topics


def _messages() -> list[tuple[str, bytes]]:
    assert CORPUS is not None
    return [(p.name, p.read_bytes()) for p in sorted(CORPUS.glob("msg_*.txt"))]


def _lane(raw: bytes) -> int:
    # Messages sharing a Message-ID go down one connection, one after the other, as one sender would send them.
    found = re.search(rb"(?im)^message-id:\s*(\S+)", raw)
    return hashlib.sha256(found.group(1) if found else raw).digest()[0] % LANES


async def _send_lane(port: int, lane: list[tuple[str, bytes]]) -> dict[str, str]:
    replies: dict[str, str] = {}
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await client.connect()
    try:
        for name, raw in lane:
            await client.mail("corpus@customer.example")
            await client.rcpt("service@shop-a.example")
            try:
                response = await client.data(raw)
                replies[name] = f"{response.code} {response.message}"
            except aiosmtplib.SMTPResponseException as exc:
                replies[name] = f"{exc.code} {exc.message}"
    finally:
        await client.quit()
    return replies


def _check_outcomes(replies: dict[str, str], records: list[InboundMessage], letters: list[DeadLetter]) -> None:
    ids = {r.message_id for r in records}
    refused = 0
    for name, reply in replies.items():
        code = int(reply[:3])
        assert code == 250 or 500 <= code < 600, f"{name}: {reply}"
        if code >= 500:
            refused += 1
        elif "Accepted as" in reply or "Already accepted as" in reply:
            assert set(reply.split(" as ", 1)[1].split()) <= ids, f"{name}: no record for {reply}"
        else:
            assert "not routed" in reply, f"{name}: {reply}"
    assert len(letters) == refused


@needs_corpus
async def test_every_corpus_message_becomes_a_record_or_a_reasoned_refusal_over_smtp(
    corpus_service: tuple[EmailService, Topics], kafka_bootstrap: str
) -> None:
    service, topics = corpus_service
    assert service.smtp.port is not None
    messages = _messages()
    lanes: list[list[tuple[str, bytes]]] = [[] for _ in range(LANES)]
    for name, raw in messages:
        lanes[_lane(raw)].append((name, raw))
    async with asyncio.timeout(60):
        results = await asyncio.gather(*(_send_lane(service.smtp.port, lane) for lane in lanes if lane))
    replies = {name: reply for lane in results for name, reply in lane.items()}
    assert len(replies) == len(messages) >= 40
    records = [m for _, m in await read_all(kafka_bootstrap, topics.inbound) if isinstance(m, InboundMessage)]
    letters = [m for _, m in await read_all(kafka_bootstrap, topics.dlq) if isinstance(m, DeadLetter)]
    _check_outcomes(replies, records, letters)
    print("corpus outcomes:", sorted(collections.Counter(r.split(" as ")[0] for r in replies.values()).items()))
    assert sum("Accepted as" in r for r in replies.values()) >= 20, replies
    assert all(r.tenant_id == "shop-a" and r.conversation_id for r in records)


@needs_corpus
async def test_every_corpus_message_gets_a_clear_answer_over_http(
    corpus_service: tuple[EmailService, Topics],
) -> None:
    service, _ = corpus_service
    url = f"http://127.0.0.1:{service.runtime.port}/v1/email/inbound/shop-b"
    async with httpx.AsyncClient(timeout=30) as http:

        async def post(raw: bytes) -> httpx.Response:
            return await http.post(
                url,
                params={"recipient": "service@shop-b.example", "sender": "corpus@customer.example"},
                content=raw,
                headers=signed_mail_headers("shop-b", raw),
            )

        messages = _messages()
        lanes: dict[int, list[bytes]] = {}
        for _, raw in messages:
            lanes.setdefault(_lane(raw), []).append(raw)

        async def run_lane(lane: list[bytes]) -> list[int]:
            return [(await post(raw)).status_code for raw in lane]

        async with asyncio.timeout(60):
            statuses = [s for lane in await asyncio.gather(*map(run_lane, lanes.values())) for s in lane]
        assert len(statuses) == len(messages)
        assert set(statuses) <= {200, 202, 413, 422}, statuses
        assert (await http.get(f"http://127.0.0.1:{service.runtime.port}/readyz")).status_code == 200
