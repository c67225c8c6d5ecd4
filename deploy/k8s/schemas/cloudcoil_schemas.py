"""Write the KEDA and Prometheus Operator JSON schemas of this folder from the cloudcoil model packages (PyPI).

The cloudcoil-models-* wheels are pydantic models generated from the projects' CRDs; their JSON schema keeps every
field name, type and required list. Run in a throwaway virtualenv (not the project's: these are not dependencies):

    python3 -m venv /tmp/cc && /tmp/cc/bin/pip install cloudcoil-models-keda==2.16.1.0 \
        cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/cc/bin/python deploy/k8s/schemas/cloudcoil_schemas.py

tests/unit/test_deploy.py reads the files (group, version and kind from `x-kubernetes-group-version-kind`) and makes
every object schema strict (no property beyond the listed ones) when it validates.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

HERE = Path(__file__).resolve().parent
MODELS: list[tuple[str, str, str, str, Any]] = [
    ("keda", "cloudcoil-models-keda", "keda.sh", "v1alpha1", keda.ScaledObject),
    ("keda", "cloudcoil-models-keda", "keda.sh", "v1alpha1", keda.TriggerAuthentication),
    ("prometheus-operator", "cloudcoil-models-prometheus-operator", "monitoring.coreos.com", "v1", monitoring.PodMonitor),
    (
        "prometheus-operator",
        "cloudcoil-models-prometheus-operator",
        "monitoring.coreos.com",
        "v1",
        monitoring.ServiceMonitor,
    ),
    (
        "prometheus-operator",
        "cloudcoil-models-prometheus-operator",
        "monitoring.coreos.com",
        "v1",
        monitoring.PrometheusRule,
    ),
]


def main() -> None:
    """Write one `<kind>-<version>.json` per model."""
    for folder, package, group, api_version, model in MODELS:
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["x-kubernetes-group-version-kind"] = [
            {"group": group, "version": api_version, "kind": model.__name__}
        ]
        schema["x-source"] = f"{package}=={version(package)} ({model.__module__}.{model.__name__})"
        path = HERE / folder / f"{model.__name__.lower()}-{api_version}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
