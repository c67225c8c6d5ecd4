"""One load test from start to report: scenario → schedule → (stack) → driver → report folder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

from switchboard_tools.loadgen.compare import comparison, comparison_text, write_comparison
from switchboard_tools.loadgen.customers import Endpoints
from switchboard_tools.loadgen.driver import Run
from switchboard_tools.loadgen.fixtures import Credentials, write_stack_config
from switchboard_tools.loadgen.localstack import local_stack
from switchboard_tools.loadgen.report import Report, build_report, terminal_summary, write_report
from switchboard_tools.loadgen.scenario import Scenario, load_scenario
from switchboard_tools.loadgen.schedule import Schedule, build_schedule
from switchboard_tools.loadgen.settings import LoadgenSettings


@dataclass(frozen=True)
class Outcome:
    """Where the report went and what it says."""

    report: Report
    folder: Path
    summary: str

    @property
    def balanced(self) -> bool:
        """True when the accounting found nothing lost, duplicated or unexpected."""
        return bool(self.report["accounting"]["balanced"])


def run_name(scenario: Scenario, seed: int, profile: str = "on") -> str:
    """`<scenario>-s<seed>[-off]-<UTC time>`: a folder name that sorts by time (`-off`: the profile-off run)."""
    label = "-off" if profile == "off" else ""
    return f"{scenario.name}-s{seed}{label}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def plan(settings: LoadgenSettings) -> tuple[Scenario, Schedule, Credentials]:
    """The scenario, its schedule for the seed, and the run's credentials."""
    scenario = load_scenario(settings.loadgen_scenario)
    schedule = build_schedule(scenario, settings.loadgen_seed)
    return scenario, schedule, Credentials(settings.loadgen_run_key)


def write_config(settings: LoadgenSettings, out: Path) -> dict[str, str]:
    """Write the stack config of the scenario's tenants into `out` (for a deployed stack)."""
    scenario, schedule, creds = plan(settings)
    return write_stack_config(scenario, schedule, creds, out)


def load_test(settings: LoadgenSettings, profile: str | None = None) -> Outcome:
    """Run one load test and write its report into `<loadgen_out>/<run name>/`.

    `profile` "on" lets the operator switch the scenario's surge profile on, "off" runs the same schedule without
    it (default: the settings' `loadgen_profile`, which must then be "on" or "off").
    """
    profile = profile or settings.loadgen_profile
    if profile not in ("on", "off"):
        raise ValueError(f"one run has the profile on or off, not {profile!r}")
    scenario, schedule, creds = plan(settings)
    name = run_name(scenario, schedule.seed, profile)
    folder = settings.loadgen_out / name
    if settings.loadgen_start_stack:
        config_env = write_stack_config(scenario, schedule, creds, folder / "stack-config")
        run_id = f"lg{int(time.time()) % 10**8:08d}"
        with local_stack(
            folder / "stack",
            config_env,
            run_id,
            settings.loadgen_partitions,
            settings.loadgen_ready_timeout_s,
            settings.loadgen_keep_data,
        ) as endpoints:
            report = _drive(scenario, schedule, endpoints, creds, name, settings.loadgen_progress, profile)
    else:
        endpoints = settings.given_endpoints()
        report = _drive(scenario, schedule, endpoints, creds, name, settings.loadgen_progress, profile)
    write_report(report, folder)
    return Outcome(report, folder, terminal_summary(report))


def load_test_ab(settings: LoadgenSettings) -> tuple[Outcome, Outcome, Path, str]:
    """The scenario twice with one seed, surge profile off then on, each against a stack of its own; the two
    reports and the comparison (`<loadgen_out>/<scenario>-s<seed>-ab-<time>/`: index.html, compare.json,
    summary.txt). Returns both outcomes, the comparison folder and its text."""
    off = load_test(settings, "off")
    on = load_test(settings, "on")
    folder, text = compare_reports(off.report, on.report, settings.loadgen_out)
    return off, on, folder, text


def compare_reports(off: Report, on: Report, out: Path) -> tuple[Path, str]:
    """Write the comparison of a profile-off and a profile-on report into `<out>/<scenario>-s<seed>-ab-<time>/`."""
    cmp = comparison(off, on)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = out / f"{cmp['scenario']}-s{cmp['seed']}-ab-{stamp}"
    write_comparison(cmp, folder)
    return folder, comparison_text(cmp)


def compare_folders(off: Path, on: Path, out: Path) -> tuple[Path, str]:
    """The comparison of two runs already made (their report folders, each with report.json)."""
    reports = [json.loads((folder / "report.json").read_text(encoding="utf-8")) for folder in (off, on)]
    for folder, report, profile in zip((off, on), reports, ("off", "on"), strict=True):
        if report["run"].get("profile") != profile:
            raise ValueError(f"{folder} is a profile-{report['run'].get('profile')} run, not profile {profile}")
    return compare_reports(reports[0], reports[1], out)


def _drive(
    scenario: Scenario,
    schedule: Schedule,
    endpoints: Endpoints,
    creds: Credentials,
    name: str,
    progress: bool,
    profile: str,
) -> Report:
    observations = uvloop.run(Run(scenario, schedule, endpoints, creds, name, progress, profile).execute())
    report = build_report(observations, scenario)
    report["run"]["endpoints"] = endpoints.as_dict()
    report["run"]["schedule"] = {
        "conversations": len(schedule.conversations),
        "messages": schedule.message_count,
        "agents": len(schedule.agents),
        "truncated": schedule.truncated,
    }
    return report
