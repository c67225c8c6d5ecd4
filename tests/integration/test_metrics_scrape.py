"""Every service's /metrics after a short sale, against docs/metrics.md and `promtool check metrics`.

The stack is the one `switchboard up` and the load test start (tools/switchboard_tools/stack): real Kafka and
Redis (the session's), every service as its own process on this test's topics and keys, the load generator's
config for its shops. A few seconds of the load generator's traffic (chat through the widget and the signed
webhook, e-mail over SMTP, phone calls, agents logging in on their desks, a bot answer, the operator switching a
surge profile on), plus two records for the DLQ (a webhook request of the wrong content type at chat, an
undecodable record on the inbound topic at the router). Then each service is scraped once and:

- every metric docs/metrics.md lists for the service ("every service" plus its section) is announced with its
  type (`# TYPE`), and has a sample unless its row says "(after first event)" (then HELP/TYPE alone is fine);
- every `sb_` metric the service announces is listed for that service;
- samples carry exactly the documented labels, and tenant/group/channel values stay in their bounded sets;
- `promtool check metrics` finds nothing to say about the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from switchboard.contracts import TYPE_HEADER
from switchboard.runtime.kafka import ensure_topics
from switchboard.runtime.signing import signed_headers
from switchboard.runtime.topics import Topics
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.driver import Run
from switchboard_tools.loadgen.fixtures import SKILL_GROUPS, Credentials, write_stack_config
from switchboard_tools.loadgen.localstack import NEEDED, ReplySink, _clean_up
from switchboard_tools.loadgen.report import build_report
from switchboard_tools.loadgen.scenario import Scenario, load_scenario
from switchboard_tools.loadgen.schedule import build_schedule
from switchboard_tools.stack.debian import ensure_promtool
from switchboard_tools.stack.procs import free_port, terminate
from switchboard_tools.stack.up import RunningService, start_order_service, start_services, wait_ready
from tests.metrics_doc import SERVICES, DocMetric, for_service

pytestmark = pytest.mark.broker

PARTITIONS = 2
REVISION = "scrape-test-rev"
CHANNELS = {"chat", "email", "phone"}
# Labels Prometheus' text format adds to a family's samples beyond the documented ones.
SAMPLE_LABELS = {"le", "quantile"}


def _scenario(path: Path) -> Path:
    """The smoke sale cut to a few seconds: a flagship and a small shop, every channel, the surge switched on."""
    data = load_scenario("smoke").model_dump(mode="json")
    data.update(name="metrics-scrape", duration_s=8)
    data["arrivals"] = {"baseline_per_s": 1.5, "spike": {"at_s": 3, "peak_multiplier": 2, "ramp_s": 1, "decay_s": 2}}
    data["channels"] = {"chat": 0.5, "email": 0.25, "phone": 0.25}
    data["tenants"] = [{"id": "mx-flagship", "share": 0.7, "agents": 3}]
    data["small_shops"] = {"count": 1, "prefix": "mx-shop", "share": 0.3, "agents": 1}
    data["shift_change"] = {"at_s": 6, "leaving_fraction": 0.34, "overlap_s": 1}
    data["operator"] = {"surge_at_s": 2, "profile": "double11", "capacity_multiplier": 1.5}
    data["agents"]["handling_time"] = {"mean_s": 2, "sigma": 0.4, "max_s": 4}
    data["limits"] = {"max_conversations": 16, "drain_s": 15, "max_run_s": 35}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@dataclass
class Stack:
    """The running services (by name) and where the load generator reaches them."""

    services: dict[str, RunningService]
    endpoints: Endpoints
    topics: Topics
    tenants: list[str]
    config_env: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.services[name].port}"


@contextlib.contextmanager
def _stack(
    tmp_path: Path,
    bootstrap: str,
    redis_url: str,
    scenario: Scenario,
    config_env: dict[str, str],
    mp: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    """What the load test's local stack starts (loadgen/localstack.py), on the session's Kafka and Redis."""
    run_id = f"mx{int(time.time() * 1000) % 10**9:09d}"
    topics = Topics(f"{run_id}.")
    smtp_port = free_port()
    relay = Controller(ReplySink(), hostname="127.0.0.1", port=free_port())
    relay.start()
    # start_services passes this process's environment on to every service.
    env = {
        **config_env,
        "SB_TOPIC_PREFIX": topics.prefix,
        "SB_KEY_PREFIX": run_id,
        "SB_HTTP_HOST": "127.0.0.1",
        "SB_SMTP_HOST": "127.0.0.1",
        "SB_SMTP_PORT": str(smtp_port),
        "SB_RELAY_HOST": "127.0.0.1",
        "SB_RELAY_PORT": str(relay.port),
        "SB_LOG_LEVEL": "WARNING",
        "SB_SHUTDOWN_GRACE_S": "3",
        "SB_BUILD_REVISION": REVISION,
        # The board's figures (and their gauges) refresh every second rather than every five.
        "SB_BOARD_SAMPLE_S": "1",
        "SB_QUEUE_STATS_INTERVAL_S": "1",
    }
    for name, value in env.items():
        mp.setenv(name, value)
    running: list[RunningService] = []
    try:
        asyncio.run(ensure_topics(bootstrap, topics.specs(PARTITIONS)))
        running.append(start_order_service(tmp_path, Path(config_env["SB_ORDERS_FILE"])))
        mp.setenv("SB_ORDER_LOOKUP_URL", f"http://127.0.0.1:{running[-1].port}")
        mp.setenv("SB_CUSTOMER_LOOKUP_URL", f"http://127.0.0.1:{running[-1].port}")
        running += start_services(list(NEEDED), bootstrap, redis_url, tmp_path)
        wait_ready(running, 150)
        by_name = {s.name: s for s in running}
        endpoints = Endpoints(
            chat_http=f"http://127.0.0.1:{by_name['chat'].port}",
            gateway_http=f"http://127.0.0.1:{by_name['gateway'].port}",
            phone_http=f"http://127.0.0.1:{by_name['phone'].port}",
            presence_http=f"http://127.0.0.1:{by_name['presence'].port}",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            topic_prefix=topics.prefix,
            key_prefix=run_id,
        )
        yield Stack(by_name, endpoints, topics, [t.id for t in scenario.all_tenants()], config_env)
    finally:
        for svc in reversed(running):
            terminate(svc.proc)
        relay.stop()
        asyncio.run(_clean_up(bootstrap, redis_url, topics.prefix, run_id, PARTITIONS))


async def _dead_letters(stack: Stack) -> None:
    """One refused request at chat's webhook (signed: an unauthenticated one leaves no DLQ record), one
    undecodable record at the router: both end in the DLQ."""
    tenant = stack.tenants[0]
    secret = json.loads(stack.config_env["SB_CHAT_TENANT_SECRETS"])[tenant].encode()
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(
            f"{stack.url('chat')}/chat/v1/webhook/{tenant}",
            content=b"not json",
            headers={"content-type": "text/plain", **signed_headers(secret, int(time.time()), b"not json")},
        )
    assert refused.status_code == 415, refused.text
    producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topics.inbound, b"\xff\x00 not a protobuf", key=b"c-dlq", headers=[(TYPE_HEADER, b"NoSuchType")]
        )
    finally:
        await producer.stop()


def _scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def _wait_for_sample(url: str, name: str, labels: dict[str, str], timeout: float = 30.0) -> None:
    """Until `url`'s metric `name` has a sample with (at least) `labels`."""
    deadline = time.monotonic() + timeout
    while True:
        family = _families(_scrape(url)).get(name)
        if family and any(labels.items() <= got.items() for _, got, _ in family.samples):
            return
        assert time.monotonic() < deadline, f"no {name}{labels} in {url}/metrics after {timeout}s"
        time.sleep(0.3)


@dataclass(frozen=True)
class Family:
    """One metric family of a scrape, by the name its `# TYPE` line gives."""

    name: str
    type: str
    samples: list[tuple[str, dict[str, str], float]]


def _families(text: str) -> dict[str, Family]:
    found: dict[str, Family] = {}
    for family in text_string_to_metric_families(text):
        # The parser drops a counter's `_total` from the family name; the `# TYPE` line and docs keep it.
        name = f"{family.name}_total" if family.type == "counter" else family.name
        samples = [(s.name, dict(s.labels), s.value) for s in family.samples]
        found[name] = Family(name, family.type, samples)
    return found


def _check_documented(service: str, documented: dict[str, DocMetric], families: dict[str, Family]) -> list[str]:
    problems = []
    for name, doc in sorted(documented.items()):
        family = families.get(name)
        if family is None:
            problems.append(f"{service}: documented {name} ({doc.section}) is not exported")
            continue
        if family.type != doc.type:
            problems.append(f"{service}: {name} is a {family.type}, documented as a {doc.type}")
        if not family.samples and not doc.after_first_event:
            problems.append(f"{service}: {name} has no sample (only a row marked '(after first event)' may)")
        for sample, labels, _ in family.samples:
            got = set(labels) - SAMPLE_LABELS
            if got != set(doc.labels):
                problems.append(f"{service}: {sample} has labels {sorted(got)}, documented {list(doc.labels)}")
                break
    undocumented = sorted(n for n in families if n.startswith("sb_") and n not in documented)
    problems += [
        f"{service}: {n} is exported but not documented for {service} in docs/metrics.md" for n in undocumented
    ]
    return problems


def _check_bounded(service: str, families: dict[str, Family], tenants: set[str], groups: set[str]) -> list[str]:
    """Label values of contract 1a: configured tenant or "unknown", configured group or "none", known channels."""
    allowed = {"tenant": tenants | {"unknown"}, "group": groups | {"none"}, "channel": CHANNELS}
    problems = []
    for family in families.values():
        if not family.name.startswith("sb_"):
            continue
        for label, values in allowed.items():
            seen = {labels[label] for _, labels, _ in family.samples if label in labels}
            if seen - values:
                problems.append(f"{service}: {family.name} has {label} values outside the bounded set: {seen - values}")
    return problems


def _promtool(promtool: str, service: str, text: str) -> list[str]:
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or said:
        return [f"{service}: promtool check metrics (exit {result.returncode}): {said}"]
    return []


def _routing_groups(config_env: dict[str, str]) -> set[str]:
    groups = set(SKILL_GROUPS)
    for path in Path(config_env["SB_ROUTING_CONFIG_DIR"]).glob("*.yaml"):
        groups |= {g["name"] for g in yaml.safe_load(path.read_text())["skill_groups"]}
    return groups


def test_every_service_exports_what_docs_metrics_md_lists_and_promtool_is_content(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    promtool = str(ensure_promtool())
    scenario = load_scenario(_scenario(tmp_path / "scenario.yaml"))
    schedule = build_schedule(scenario, scenario.seed)
    creds = Credentials("switchboard-metrics-scrape")
    config_env = write_stack_config(scenario, schedule, creds, tmp_path / "stack-config")
    started = time.monotonic()
    with _stack(tmp_path, kafka_bootstrap, redis_url, scenario, config_env, monkeypatch) as stack:
        load_started = time.monotonic()
        observations = asyncio.run(Run(scenario, schedule, stack.endpoints, creds, "metrics-scrape", False).execute())
        load_s = time.monotonic() - load_started
        accounting = build_report(observations, scenario)["accounting"]
        assert accounting["accepted"] > 0, accounting
        asyncio.run(_dead_letters(stack))
        _wait_for_sample(stack.url("router"), "sb_records_dead_lettered_total", {"error_type": "decode_error"})
        time.sleep(1.5)  # one more refresh of the board's gauges and the consumers' lag after the last record
        scrapes = {name: _scrape(stack.url(name)) for name in SERVICES}
    (tmp_path / "scrapes.json").write_text(json.dumps(scrapes))

    tenants, groups = set(stack.tenants), _routing_groups(config_env)
    problems: list[str] = []
    for service, text in scrapes.items():
        families = _families(text)
        problems += _check_documented(service, for_service(service), families)
        problems += _check_bounded(service, families, tenants, groups)
        problems += _promtool(promtool, service, text)
        ready = [v for _, labels, v in families["sb_ready"].samples if labels["service"] == service]
        assert ready == [1.0], f"{service}: sb_ready {ready}"
        (build,) = families["sb_build_info"].samples
        assert build[1]["revision"] == REVISION and build[1]["service"] == service and build[2] == 1.0
    assert not problems, "\n".join(problems)

    # The runtime figures of contract 1a, beyond their presence: lag per owned partition of each consumer group,
    # the DLQ by reason.
    for service in ("router", "chat", "email", "gateway"):
        lag = _families(scrapes[service])["sb_consumer_lag"].samples
        assert lag, f"{service} reports no consumer lag"
        assert all(labels["topic"].startswith(stack.topics.prefix) and not math.isnan(v) for _, labels, v in lag)
    dlq = _families(scrapes["router"])["sb_records_dead_lettered_total"].samples
    assert any(labels["error_type"] == "decode_error" and v >= 1 for _, labels, v in dlq), dlq
    chat_dlq = _families(scrapes["chat"])["sb_records_dead_lettered_total"].samples
    assert any(labels["error_type"] == "unsupported_media_type" and v >= 1 for _, labels, v in chat_dlq), chat_dlq
    # Short enough for `make test` on two shared cores.
    assert load_s < 60, f"the load took {load_s:.0f}s"
    print(f"stack + load + scrape: {time.monotonic() - started:.0f}s (load {load_s:.0f}s)")
