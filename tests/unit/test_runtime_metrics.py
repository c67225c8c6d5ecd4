"""sb_ready follows what /readyz answers on every service; sb_build_info names the build."""

from __future__ import annotations

import platform

import httpx
import pytest
from prometheus_client import REGISTRY

from switchboard.runtime.service import ServiceRuntime
from switchboard.runtime.settings import ServiceSettings


def _ready(service: str) -> float | None:
    return REGISTRY.get_sample_value("sb_ready", {"service": service})


async def test_sb_ready_is_what_readyz_answers_from_every_check_and_stopping() -> None:
    runtime = ServiceRuntime(ServiceSettings(service_name="ready-probe"))
    state = {"config": True, "sweep": False}
    runtime.add_ready_check("config", lambda: state["config"])
    runtime.add_ready_check("sweep", lambda: state["sweep"])
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        assert (await http.get("/readyz")).status_code == 503 and _ready("ready-probe") == 0.0
        state["sweep"] = True
        assert (await http.get("/readyz")).status_code == 200 and _ready("ready-probe") == 1.0
        scraped = (await http.get("/metrics")).text
        assert 'sb_ready{service="ready-probe"} 1.0' in scraped
        runtime.request_stop()
        assert (await http.get("/readyz")).status_code == 503 and _ready("ready-probe") == 0.0


def test_a_service_without_checks_is_ready_until_it_stops() -> None:
    runtime = ServiceRuntime(ServiceSettings(service_name="no-checks"))
    assert _ready("no-checks") == 1.0
    runtime.request_stop()
    assert _ready("no-checks") == 0.0


def test_build_info_names_version_revision_and_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_BUILD_REVISION", "0123abc")
    ServiceRuntime(ServiceSettings(service_name="built"))
    labels = {"service": "built", "revision": "0123abc", "python": platform.python_version()}
    samples = [
        s
        for metric in REGISTRY.collect()
        if metric.name == "sb_build_info"
        for s in metric.samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(samples) == 1 and samples[0].value == 1.0
    assert samples[0].labels["version"] not in ("", "unknown")  # the installed package's version
