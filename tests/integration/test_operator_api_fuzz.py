"""Schemathesis over the operator API's OpenAPI document (docs/operator-api.json), against a presence process on
real Redis and Kafka: cases that fit the schema and cases that break it, for every operation, with the response
checks on. No 5xx, every status documented, every body of the documented schema, every invalid request refused.

Bounded (a fixed number of examples per operation, derandomized so a failure repeats); the issue's fuzz of 12,141
cases found 225 HTTP 500s and one response outside its schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from switchboard.presence.api import openapi_document
from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.stack.procs import free_port
from tests.helpers import service_env, start_service, stop_service

pytestmark = [pytest.mark.broker]

TOKEN = "ops-fuzz-token-0123456789"
# Examples per operation and mode: 13 operations × (12 + 6) cases, about 250 requests (~60 s on a busy 2-core machine).
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class FuzzReport:
    """What the run sent and what it found."""

    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _run(strategy: Any, examples: int, call: Callable[[Any], None]) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def each(case: Any) -> None:
        call(case)

    each()


def fuzz(base_url: str, tenant_id: str) -> FuzzReport:
    """Every operation of the document, both modes; failures collected, not raised, so one run shows them all."""
    schema = schemathesis.openapi.from_dict(openapi_document())
    report = FuzzReport()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def call(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=auth, timeout=30)
        report.cases += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except Exception as exc:  # a FailureGroup or AssertionError naming each failed check
            report.failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:2000])

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES.items():
            # the cases that fit go to a tenant the token may act on, with real agents and a routing config
            fixed = {"tenant_id": tenant_id} if mode is GenerationMode.POSITIVE else None
            _run(operation.as_strategy(mode, path_parameters=fixed), examples, call)
    return report


async def test_operator_api_fuzz_finds_no_5xx_and_no_schema_violation(settings: ServiceSettings) -> None:
    env = service_env(
        settings,
        free_port(),
        SB_SERVICE_NAME="presence",
        SB_OPERATOR_TOKENS=json.dumps([{"name": "fuzz", "token": TOKEN, "tenants": ["shop-a"]}]),
    )
    proc, base = await start_service("switchboard.presence", env, timeout=60)
    try:
        report = await asyncio.to_thread(fuzz, base, "shop-a")
    finally:
        await stop_service(proc)
    print(f"operator API fuzz: {report.cases} cases, statuses {sorted(report.statuses.items())}")
    assert report.cases >= 150
    assert not report.failures, "\n\n".join(report.failures[:20])
    assert not any(code >= 500 for code in report.statuses)
    # the run reached the API itself, not only its refusals
    assert report.statuses.get(200, 0) + report.statuses.get(201, 0) >= 10, report.statuses
