"""deploy/monitoring/ and the kustomize `monitoring` component: the alert rules pass promtool and their unit tests,
every alert has a runbook section, every query uses only documented metrics and aggregates the gateway's shared
gauges with `max`, and the component carries the same rules it renders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard_tools.stack.debian import ensure_promtool
from switchboard_tools.stack.kustomize import ensure_kustomize
from switchboard_tools.stack.pages import build_pages
from tests import metrics_doc

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERT_TESTS = MONITORING / "alerts-test.yaml"
K8S = ROOT / "deploy" / "k8s"
COMPONENT = K8S / "components" / "monitoring"
OVERLAYS = ("dev", "production", "double11")

# Contract 1f of the operators' plan: the alerts, in group `switchboard`.
CONTRACT_ALERTS = {
    "SwitchboardServiceLevelBreach",
    "SwitchboardOldestWaitHigh",
    "SwitchboardConsumerLagGrowing",
    "SwitchboardDLQSpike",
    "SwitchboardPresenceDrop",
    "SwitchboardNoReadyReplicas",
    "SwitchboardRouterStalled",
}
# The same figure read from Redis by every gateway replica (docs/metrics.md, "Aggregating across replicas").
SHARED_GAUGES = re.compile(
    r"^sb_(queue_waiting|queue_oldest_wait_seconds|service_level|service_level_target_seconds|occupancy|agents)$"
)

Obj = dict[str, Any]


def rules() -> list[Obj]:
    """Every rule of alerts.yaml."""
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


# --- PromQL -----------------------------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
# Aggregation operators: `max by (x) (...)` puts their name before `by`, not before a parenthesis.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges, label lists, functions,
    keywords, numbers and Grafana's $variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    # A variable's label_values(selector, label): the label is no metric.
    text = re.sub(r"(label_values\(.*),\s*\w+\s*\)", r"\1)", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1 ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\boffset\s+\d+\w*", " ", text)
    found = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name not in _KEYWORDS | _AGGREGATIONS and not re.fullmatch(r"\d+(ms|s|m|h|d|w|y)", name):
            found.add(name)
    return found


def test_metric_names_reads_selectors_not_labels_functions_or_keywords() -> None:
    expr = (
        'max by (tenant, group) (sb_queue_waiting{tenant=~"$tenant", group!="none"}) > on (tenant) group_left () '
        "10 * histogram_quantile(0.9, sum by (le) (rate(sb_time_to_offer_seconds_bucket[5m] offset 10m))) "
        "unless sb_ready"
    )
    assert metric_names(expr) == {"sb_queue_waiting", "sb_time_to_offer_seconds_bucket", "sb_ready"}


def shared_gauges_summed(expr: str) -> list[str]:
    """Shared gateway gauges in `expr` whose innermost aggregation is not `max` (they would be counted once per
    replica)."""
    wrong = []
    for match in re.finditer(r"\bsb_\w+", expr):
        if not SHARED_GAUGES.match(match.group(0)):
            continue
        before = expr[: match.start()].rstrip()
        if not re.search(r"\bmax(\s+by\s*\([^)]*\))?\s*\($", before):
            wrong.append(match.group(0))
    return wrong


def test_shared_gauges_summed_catches_a_sum_and_accepts_a_max() -> None:
    assert shared_gauges_summed("sum by (tenant) (sb_agents)") == ["sb_agents"]
    assert shared_gauges_summed("sb_service_level < 0.8") == ["sb_service_level"]
    assert shared_gauges_summed('sum(max by (tenant, group) (sb_agents{status="busy"} offset 10m))') == []


# --- metrics.md -------------------------------------------------------------------------------------------------


def documented_metrics() -> frozenset[str]:
    """The sample names docs/metrics.md allows (a histogram's `_bucket`, `_sum` and `_count`)."""
    return metrics_doc.sample_names()


def undocumented(names: set[str]) -> set[str]:
    """The names that no metric of docs/metrics.md exports."""
    return names - documented_metrics()


# Labels Prometheus adds to every series it scrapes through the PodMonitor.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "endpoint", "job", "instance"})


def unknown_labels(expr: str) -> list[tuple[str, str]]:
    """(metric, label) pairs `expr` matches on or aggregates by directly that docs/metrics.md does not give the
    metric (a typo or a label the metric lacks matches nothing, silently)."""
    labels = {m.name: set(m.labels) for m in metrics_doc.all_metrics()}
    found = []
    for match in re.finditer(r"\b(sb_\w+)\{([^}]*)\}", expr):
        found += [(match.group(1), name) for name in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", match.group(2))]
    inner = r"\bby\s*\(([^)]*)\)\s*\((?:\s*\w+\s*\()*\s*(sb_\w+)"
    for match in re.finditer(inner, expr):
        found += [(match.group(2), name.strip()) for name in match.group(1).split(",") if name.strip()]
    wrong = []
    for metric, label in found:
        base = re.sub(r"_(bucket|sum|count)$", "", metric) if metric not in labels else metric
        allowed = labels.get(base, set()) | TARGET_LABELS | ({"le"} if metric.endswith("_bucket") else set())
        if label not in allowed:
            wrong.append((metric, label))
    return wrong


def test_unknown_labels_catches_a_label_the_metric_lacks() -> None:
    assert unknown_labels('max by (namespace, tenant, group) (sb_agents{status="busy"})') == []
    assert unknown_labels('sum by (le) (rate(sb_time_to_offer_seconds_bucket{channel="chat"}[5m]))') == []
    assert unknown_labels('sb_agents{state="busy"}') == [("sb_agents", "state")]
    assert unknown_labels("max by (channel) (sb_service_level)") == [("sb_service_level", "channel")]


# --- alert rules ------------------------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """promtool run in deploy/monitoring (the rule tests name alerts.yaml relative to it)."""
    return subprocess.run(
        [ensure_promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_the_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", ALERT_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_are_the_contract_ones_in_group_switchboard() -> None:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    assert [g["name"] for g in groups] == ["switchboard"]
    assert {rule["alert"] for rule in rules()} == CONTRACT_ALERTS


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    assert {name: kinds for name, kinds in cases.items()} == {name: {True, False} for name in CONTRACT_ALERTS}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_names_a_severity_a_summary_and_its_runbook_section(rule: Obj) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_queries_only_documented_metrics(rule: Obj) -> None:
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    assert not undocumented(names), f"not in docs/metrics.md: {sorted(undocumented(names))}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_takes_the_gateway_gauges_with_max(rule: Obj) -> None:
    assert shared_gauges_summed(rule["expr"]) == []


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_uses_the_labels_its_metrics_have(rule: Obj) -> None:
    assert unknown_labels(rule["expr"]) == []


# --- the kustomize component ------------------------------------------------------------------------------------


def test_the_component_copies_of_deploy_monitoring_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_monitoring.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def kustomize(directory: Path) -> list[Obj]:
    """kustomize's render of a folder (the component alone, or an overlay with it)."""
    out = subprocess.run([*ensure_kustomize(), str(directory)], check=True, capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


def with_component(overlay: str, tmp_path: Path) -> Path:
    """A kustomization of `overlay` with the monitoring component, as an operator would write it."""
    up = Path(os.path.relpath(K8S, tmp_path))
    kustomization = {"resources": [str(up / "overlays" / overlay)], "components": [str(up / "components/monitoring")]}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return tmp_path


def only(objects: list[Obj], kind: str) -> Obj:
    """The one object of `kind`."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def check_monitoring_objects(objects: list[Obj]) -> None:
    """The PodMonitor scrapes the `internal` port, the PrometheusRule is alerts.yaml."""
    monitor = only(objects, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "internal", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/part-of": "switchboard"}}
    assert only(objects, "PrometheusRule")["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    # Grafana's dashboard sidecar loads every ConfigMap labelled grafana_dashboard: "1".
    labelled = [
        o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {})
    ]
    assert [(o["metadata"]["name"], o["metadata"]["labels"]) for o in labelled] == [
        ("switchboard-grafana-dashboards", {"grafana_dashboard": "1"})
    ]
    assert labelled[0]["data"] == {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS}


def test_the_component_renders_alone() -> None:
    objects = kustomize(COMPONENT)
    check_monitoring_objects(objects)
    # A PodMonitor looks for pods in its own namespace: the component names none, so it takes the overlay's.
    assert all("namespace" not in o["metadata"] for o in objects)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_renders_with_every_overlay(overlay: str, tmp_path: Path) -> None:
    objects = kustomize(with_component(overlay, tmp_path))
    check_monitoring_objects(objects)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    # Every switchboard workload is selected by the PodMonitor, and serves its metrics on the port it scrapes.
    part_of = "app.kubernetes.io/part-of"
    selected = [d for d in deployments if d["spec"]["template"]["metadata"]["labels"].get(part_of) == "switchboard"]
    assert {d["metadata"]["name"] for d in selected} >= {"router", "gateway", "chat", "email", "phone", "presence"}
    for deployment in selected:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for c in containers for port in c.get("ports", [])}
        assert ports.get("internal") == 9090, f"{deployment['metadata']['name']}: no container port `internal`"


# --- dashboards -------------------------------------------------------------------------------------------------

DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WEB = ROOT / "web"


def load_dashboard(path: Path) -> Obj:
    """A dashboard JSON file."""
    data: Obj = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: Obj) -> list[Obj]:
    """Every panel that shows data (rows only group them)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(dashboard: Obj) -> list[str]:
    """Every PromQL expression of the panels."""
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def test_there_is_an_overview_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["switchboard-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_query_on_the_chosen_prometheus(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert panels(dashboard)
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_covers_the_overview_rows(path: Path) -> None:
    rows = [p["title"] for p in load_dashboard(path)["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview",
        "Traffic",
        "Queues",
        "Service level",
        "Agents",
        "Kafka consumer lag",
        "Errors, DLQ and readiness",
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_have_unique_ids_and_do_not_overlap_on_the_grid(path: Path) -> None:
    dashboard = load_dashboard(path)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_queries_only_documented_metrics(path: Path) -> None:
    dashboard = load_dashboard(path)
    variable_queries = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    names = set().union(*(metric_names(expr) for expr in [*queries(dashboard), *variable_queries]))
    assert not undocumented(names), f"not in docs/metrics.md: {sorted(undocumented(names))}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_takes_the_gateway_gauges_with_max(path: Path) -> None:
    summed = [(expr, shared_gauges_summed(expr)) for expr in queries(load_dashboard(path))]
    assert [(expr, names) for expr, names in summed if names] == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_uses_the_labels_its_metrics_have(path: Path) -> None:
    dashboard = load_dashboard(path)
    variable_queries = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert [
        (expr, unknown_labels(expr)) for expr in [*queries(dashboard), *variable_queries] if unknown_labels(expr)
    ] == []


# Metrics of contract 1a with a tenant label: a tenant chosen in the dashboard must narrow every query on them.
TENANT_METRICS = re.compile(
    r"^sb_(inbound_messages_total|router_decisions_total|time_to_(offer|assign)_seconds_bucket|offers_missed_total"
    r"|abandoned_total|bot_answered_total|queue_waiting|queue_oldest_wait_seconds|service_level"
    r"|service_level_target_seconds|occupancy|agents|response_seconds_bucket|responses_total)$"
)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_tenant_variable_drills_down_every_tenant_query(path: Path) -> None:
    dashboard = load_dashboard(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    tenant = variables["tenant"]
    assert tenant["type"] == "query" and tenant["multi"] and tenant["includeAll"] and tenant["allValue"] == ".*"
    narrowed = 0
    for expr in queries(dashboard):
        for selector in re.finditer(r"\b(sb_\w+)\s*(\{[^}]*\})?", expr):
            if TENANT_METRICS.match(selector.group(1)):
                assert 'tenant=~"$tenant"' in (selector.group(2) or ""), expr
                narrowed += 1
    assert narrowed >= 20


def grafana_type_check(dashboard: Obj) -> str:
    """TypeScript that assigns the dashboard to Grafana's published schema (@grafana/schema, in web/'s dev
    dependencies) and each panel's options and field config to its panel plugin's types: tsc rejects an unknown
    field, a wrong type or a missing required option, as Grafana's import would."""
    plugins = {"timeseries": "TimeSeries", "stat": "Stat", "table": "Table"}
    lines = ['import type { Dashboard } from "@grafana/schema";']
    for kind, name in plugins.items():
        lines.append(
            f'import type * as {kind} from "@grafana/schema/dist/esm/raw/composable/{kind}/panelcfg/x/'
            f'{name}PanelCfg_types.gen";'
        )
    # The schema's TypeScript enums (FieldColorModeId, ThresholdsMode ...) as the strings a JSON file holds.
    lines.append(
        "type Plain<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? Plain<U>[] "
        ": T extends object ? { [K in keyof T]: Plain<T[K]> } : T;"
    )
    lines.append(f"export const dashboard: Plain<Dashboard> = {json.dumps(dashboard)};")
    for panel in panels(dashboard):
        kind, pid = panel["type"], panel["id"]
        assert kind in plugins, f"{panel['title']}: add the {kind} panel's types to this check"
        lines.append(f"export const options{pid}: Plain<{kind}.Options> = {json.dumps(panel['options'])};")
        if kind != "stat":  # the stat panel has no custom field config
            custom = json.dumps(panel["fieldConfig"]["defaults"].get("custom", {}))
            lines.append(f"export const custom{pid}: Plain<{kind}.FieldConfig> = {custom};")
    return "\n".join(lines) + "\n"


def grafana_type_errors(dashboard: Obj, tmp_path: Path) -> str:
    """tsc's complaints about `dashboard` against Grafana's schema ("" when it fits)."""
    build_pages()  # installs web/'s npm packages from its lock when they are missing or stale
    (tmp_path / "node_modules").symlink_to(WEB / "node_modules")
    (tmp_path / "dashboard.ts").write_text(grafana_type_check(dashboard), encoding="utf-8")
    options = {"strict": True, "noEmit": True, "module": "esnext", "moduleResolution": "bundler", "target": "es2022"}
    config = {"compilerOptions": {**options, "skipLibCheck": True}, "files": ["dashboard.ts"]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    tsc = WEB / "node_modules" / ".bin" / "tsc"
    done = subprocess.run([str(tsc), "-p", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    return "" if done.returncode == 0 else done.stdout[:4000] or done.stderr[:4000]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_matches_grafanas_schema(path: Path, tmp_path: Path) -> None:
    assert grafana_type_errors(load_dashboard(path), tmp_path) == ""


def test_the_schema_check_rejects_a_misspelt_option_and_a_wrong_value(tmp_path: Path) -> None:
    dashboard = load_dashboard(DASHBOARDS[0])
    panel = next(p for p in panels(dashboard) if p["type"] == "timeseries")
    panel["options"]["legend"]["showLegnd"] = panel["options"]["legend"].pop("showLegend")
    dashboard["graphTooltip"] = "shared"
    errors = grafana_type_errors(dashboard, tmp_path).splitlines()
    assert any("'\"showLegnd\"' does not exist" in line for line in errors), errors
    assert any(
        re.search(r"dashboard\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable", line) for line in errors
    )


# --- the runbook ------------------------------------------------------------------------------------------------

RUNBOOK = ROOT / "docs" / "runbook.md"


def runbook_sections() -> dict[str, str]:
    """The runbook's "## " sections by their anchor (GitHub's: lowercase, punctuation dropped, spaces as dashes)."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", RUNBOOK.read_text(encoding="utf-8"), flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        sections[anchor] = body
    return sections


def test_the_runbook_covers_the_promo_the_night_and_the_dlq() -> None:
    sections = runbook_sections()
    assert {"before-a-promo", "at-0000-what-to-watch", "the-dlq-inspect-and-re-drive"} <= set(sections)
    before = sections["before-a-promo"]
    for lever in ("overlays/double11", "surge/profiles", "surge/schedules", "partition", "temporary-agents"):
        assert lever in before, lever
    dlq = sections["the-dlq-inspect-and-re-drive"]
    for command in ("switchboard dlq list", "switchboard dlq show", "switchboard dlq redrive", "--dry-run"):
        assert command in dlq, command


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_alert_has_its_runbook_section(rule: Obj) -> None:
    anchor = rule["annotations"]["runbook_url"].partition("#")[2]
    section = runbook_sections().get(anchor)
    assert section is not None, f"docs/runbook.md has no '## {rule['alert']}'"
    for part in ("**What it means.**", "**Likely causes.**", "**What to do.**", "**What not to do.**"):
        assert part in section, f"{rule['alert']}: {part}"


def test_the_runbooks_links_panels_and_metrics_exist() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = set(runbook_sections())
    assert {link for link in re.findall(r"\]\(#([^)]+)\)", text)} <= anchors
    # Panels are named in italics, as the dashboard titles them.
    dashboard = load_dashboard(DASHBOARDS[0])
    titles = {p["title"] for p in dashboard["panels"]} | {dashboard["title"]}
    named = set(re.findall(r"(?<![*\w])\*([^*\n]+)\*(?!\*)", text))
    assert named and named <= titles, sorted(named - titles)
    metrics = set(re.findall(r"`(sb_\w+)", text))
    assert not undocumented(metrics), sorted(undocumented(metrics))
