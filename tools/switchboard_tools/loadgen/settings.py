"""Settings of the load generator (env prefix `SB_`, its own settings named `loadgen_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from switchboard.runtime.settings import ServiceSettings
from switchboard_tools.loadgen.customers import Endpoints

_REPO_ROOT = Path(__file__).resolve().parents[3]


class LoadgenSettings(ServiceSettings):
    """What one load-test run reads from its environment (the CLI's flags override the first three)."""

    service_name: str = "loadgen"
    # A scenario name (config/scenarios/<name>.yaml) or a path to a scenario file.
    loadgen_scenario: str = "smoke"
    loadgen_seed: int | None = None
    # "on": the operator switches the scenario's surge profile on; "off": the same run without it; "both": off,
    # then on, with one seed, and a comparison report of the two.
    loadgen_profile: Literal["on", "off", "both"] = "on"
    loadgen_out: Path = _REPO_ROOT / "reports"
    # True: start Kafka/Redis (unless KAFKA_BOOTSTRAP / REDIS_URL are set) and every service for the run, with the
    # run's config. False: drive the stack at the URLs below, which must already serve the run's tenants (install
    # the files of `switchboard loadtest --write-config DIR` there first, with the same run key).
    loadgen_start_stack: bool = True
    loadgen_chat_url: str = "http://127.0.0.1:8083"
    loadgen_gateway_url: str = "http://127.0.0.1:8082"
    loadgen_phone_url: str = "http://127.0.0.1:8085"
    loadgen_presence_url: str = "http://127.0.0.1:8080"
    loadgen_smtp_host: str = "127.0.0.1"
    loadgen_smtp_port: int = 2525
    # Secrets of the load-test tenants (agent passwords, chat and phone keys, operator token) derive from this.
    loadgen_run_key: str = "switchboard-loadgen-dev"
    # Partitions of each topic of a stack started for the run (production counts are for clusters, not 2 cores).
    loadgen_partitions: int = 4
    loadgen_progress: bool = True
    # Keep the run's topics and keys (prefix lg<time>) after a local-stack run, to investigate a finding.
    loadgen_keep_data: bool = False
    loadgen_ready_timeout_s: float = 120.0

    def given_endpoints(self) -> Endpoints:
        """The endpoints of an already running stack."""
        return Endpoints(
            chat_http=self.loadgen_chat_url.rstrip("/"),
            gateway_http=self.loadgen_gateway_url.rstrip("/"),
            phone_http=self.loadgen_phone_url.rstrip("/"),
            presence_http=self.loadgen_presence_url.rstrip("/"),
            smtp_host=self.loadgen_smtp_host,
            smtp_port=self.loadgen_smtp_port,
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            topic_prefix=self.topic_prefix,
            key_prefix=self.key_prefix,
        )
