"""Write the kustomize `monitoring` component's copies of deploy/monitoring/: the PrometheusRule from alerts.yaml and
the dashboards (kustomize reads no file outside a component's folder, so the component carries its own copies).

Usage: python scripts/gen_monitoring.py [--check]
With --check, write nothing and exit 1 when a committed copy differs (stale) or is missing.
deploy/monitoring/ is the one source: edit it, then run this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "deploy" / "monitoring"
COMPONENT = ROOT / "deploy" / "k8s" / "components" / "monitoring"
RULE_HEADER = """\
# GENERATED from deploy/monitoring/alerts.yaml by `python scripts/gen_monitoring.py`: edit that file, not this one
# (tests/unit/test_monitoring.py fails when this copy is stale). The spec is the rules file itself, comments included.
# A Prometheus Operator picks up the PrometheusRules its `ruleSelector` matches: kube-prometheus-stack's selects its
# Helm release label by default, so an overlay may have to add `release: <name>` (deploy/k8s/components/monitoring).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: switchboard
  labels:
    app.kubernetes.io/part-of: switchboard
spec:
"""


def prometheus_rule(rules_text: str) -> str:
    """The PrometheusRule whose spec is the rules file from its `groups:` line on, indented under `spec:`."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return RULE_HEADER + body


def expected() -> dict[Path, str]:
    """Every file of the component that is derived from deploy/monitoring/, with its content."""
    files = {COMPONENT / "prometheus-rule.yaml": prometheus_rule((SOURCE / "alerts.yaml").read_text(encoding="utf-8"))}
    for dashboard in sorted((SOURCE / "dashboards").glob("*.json")):
        files[COMPONENT / "dashboards" / dashboard.name] = dashboard.read_text(encoding="utf-8")
    return files


def stale() -> list[Path]:
    """The derived files that are missing or differ from what deploy/monitoring/ gives, plus orphaned dashboards."""
    files = expected()
    out = [path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    out += [path for path in sorted((COMPONENT / "dashboards").glob("*.json")) if path not in files]
    return out


def main() -> int:
    """Write the copies, or with --check report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a copy is stale instead of writing")
    args = parser.parse_args()
    if args.check:
        for path in stale():
            print(f"stale: {path.relative_to(ROOT)} (run python scripts/gen_monitoring.py)", file=sys.stderr)
        return 1 if stale() else 0
    (COMPONENT / "dashboards").mkdir(parents=True, exist_ok=True)
    for path in sorted((COMPONENT / "dashboards").glob("*.json")):
        path.unlink()
    for path, text in expected().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
