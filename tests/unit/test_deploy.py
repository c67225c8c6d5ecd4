"""The deployment files agree with the services: compose, the Dockerfile and every kustomize overlay.

No Docker engine or cluster is needed: the files are parsed, and each overlay is rendered by `kubectl kustomize`
when kubectl is on PATH, otherwise by the small resolver below (resources, components and generators, with every
patch checked against the object it targets instead of applied).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.stack.up import NOT_STARTED_BY_UP, SERVICES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "double11")
LONG_RUNNING = [name for name in SERVICES if name not in NOT_STARTED_BY_UP]
TOOLS = [name for name in SERVICES if name in NOT_STARTED_BY_UP]
COMPOSE_INFRA = {"kafka", "redis", "topics"}

Obj = dict[str, Any]


def load_yaml(path: Path) -> Any:
    """The single YAML document in `path`."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_docs(path: Path) -> list[Any]:
    """Every non-empty YAML document in `path`."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --- compose ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Obj]:
    """The services of docker-compose.yml."""
    services: dict[str, Obj] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return services


def test_compose_runs_every_switchboard_service_besides_kafka_redis_and_topics(compose: dict[str, Obj]) -> None:
    assert set(compose) >= COMPOSE_INFRA
    assert set(compose) - COMPOSE_INFRA == set(SERVICES)


def test_compose_services_share_one_image_and_pick_the_service_by_command(compose: dict[str, Obj]) -> None:
    topics = compose["topics"]
    assert topics["command"] == ["switchboard", "topics"]
    for name in SERVICES:
        svc = compose[name]
        assert (svc["image"], svc["build"]) == (topics["image"], topics["build"]), name
        assert svc["command"] == [f"switchboard.{name}"]
        assert svc["environment"]["KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert svc["environment"]["REDIS_URL"].startswith("redis://redis:6379")
        assert svc["environment"]["SB_SERVICE_NAME"] == name


def test_long_running_services_wait_for_the_topics_and_report_ready(compose: dict[str, Obj]) -> None:
    for name in LONG_RUNNING:
        svc = compose[name]
        assert "profiles" not in svc, name
        assert any("/readyz" in part for part in svc["healthcheck"]["test"]), name
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert compose["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_tools_start_only_with_the_loadtest_profile(compose: dict[str, Obj]) -> None:
    assert TOOLS, "loadgen is expected to be a tool"
    for name in TOOLS:
        assert compose[name]["profiles"] == ["loadtest"]


def test_compose_kafka_is_a_single_kraft_node(compose: dict[str, Obj]) -> None:
    kafka = compose["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert compose["redis"]["image"] == "redis:7"


# --- Dockerfile -------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_dockerfile_builds_in_stages_and_runs_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2
    assert stages[-1].split()[0] == "python:3.11-slim"
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(op == "COPY" and "--from=" in args for op, args in final)
    entrypoint = [json.loads(args) for op, args in final if op == "ENTRYPOINT"]
    assert entrypoint == [["python", "-m"]]


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".git", ".venv", ".run"} <= ignored
    assert not {"services", "pyproject.toml", "requirements.lock"} & ignored


# --- kustomize tree ---------------------------------------------------------------------------------------------


def kustomization_dirs() -> list[Path]:
    """Every folder under deploy/k8s with a kustomization.yaml."""
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def referenced_paths(directory: Path, kustomization: Obj) -> Iterator[Path]:
    """Every local path a kustomization names."""
    for key in ("resources", "components"):
        for entry in kustomization.get(key, []):
            yield directory / entry
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            yield directory / patch["path"]
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            yield directory / entry.split("=", 1)[-1]


def test_every_k8s_yaml_file_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert files
    for path in files:
        assert load_docs(path), path


def test_every_path_a_kustomization_names_exists() -> None:
    dirs = kustomization_dirs()
    assert {d.relative_to(K8S).as_posix() for d in dirs} >= {"base", *(f"overlays/{o}" for o in OVERLAYS)}
    for directory in dirs:
        for path in referenced_paths(directory, load_yaml(directory / "kustomization.yaml")):
            assert path.exists(), f"{directory}: {path} does not exist"
            if path.is_dir():
                assert (path / "kustomization.yaml").is_file(), path


def base_objects(kind: str) -> list[Obj]:
    """The objects of one kind among the base's resource files."""
    kustomization = load_yaml(K8S / "base" / "kustomization.yaml")
    docs = [doc for entry in kustomization["resources"] for doc in load_docs(K8S / "base" / entry)]
    return [doc for doc in docs if doc["kind"] == kind]


def test_every_base_deployment_has_probes_limits_and_a_locked_down_container() -> None:
    deployments = {d["metadata"]["name"]: d for d in base_objects("Deployment")}
    assert set(deployments) == set(LONG_RUNNING)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert container["args"] == [f"switchboard.{name}"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"configMapRef": {"name": "switchboard-env"}} in container["envFrom"], name


def test_base_network_policies_deny_all_and_allow_only_what_switchboard_needs() -> None:
    policies = {p["metadata"]["name"]: p for p in base_objects("NetworkPolicy")}
    deny_all = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny_all, "a deny-all NetworkPolicy is required"
    egress_ports = {port["port"] for rule in policies["allow-kafka-redis"]["spec"]["egress"] for port in rule["ports"]}
    assert egress_ports == {9092, 6379}
    edge = policies["allow-edge-ingress"]["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert set(edge) == {"gateway", "chat", "email", "phone"}
    assert "allow-prometheus-scrape" in policies


def test_base_config_points_every_service_at_kafka_and_redis() -> None:
    generators = {g["name"]: g for g in load_yaml(K8S / "base" / "kustomization.yaml")["configMapGenerator"]}
    keys = {literal.split("=", 1)[0] for literal in generators["switchboard-env"]["literals"]}
    assert {"KAFKA_BOOTSTRAP", "REDIS_URL"} <= keys
    assert "routing-config" in generators


# --- rendering --------------------------------------------------------------------------------------------------


def render(directory: Path) -> list[Obj]:
    """The objects a Kustomization renders to: `kubectl kustomize` if available, else the resolver below."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
        )
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]
    return resolve(directory, "Kustomization", [])


def resolve(directory: Path, kind: str, objects: list[Obj]) -> list[Obj]:
    """Add what `directory` contributes to `objects` (a Component works on its parent's objects)."""
    kustomization = load_yaml(directory / "kustomization.yaml")
    assert kustomization.get("kind", "Kustomization") == kind, directory
    for entry in kustomization.get("resources", []):
        path = directory / entry
        # A resource folder is a Kustomization of its own, rendered apart from its siblings.
        objects.extend(resolve(path, "Kustomization", []) if path.is_dir() else load_docs(path))
    for entry in kustomization.get("components", []):
        resolve(directory / entry, "Component", objects)
    for generator in kustomization.get("configMapGenerator", []):
        exists = find(objects, "ConfigMap", generator["name"]) is not None
        if generator.get("behavior", "create") == "create":
            assert not exists, f"{directory}: ConfigMap {generator['name']} generated twice"
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}})
        else:
            assert exists, f"{directory}: ConfigMap {generator['name']} to {generator['behavior']} is missing"
    for patch in kustomization.get("patches", []):
        check_patch(directory, patch, objects)
    return objects


def find(objects: list[Obj], kind: str, name: str) -> Obj | None:
    """The object of that kind and name, if any."""
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def check_patch(directory: Path, patch: Obj, objects: list[Obj]) -> None:
    """Fail unless the patch names objects that exist (and, for JSON patches, paths it may replace)."""
    if "path" in patch:
        docs = load_docs(directory / patch["path"])
        # `patches` takes one patch per file; a second document would be ignored or rejected.
        assert len(docs) == 1, f"{directory / patch['path']}: one patch per file"
        body = docs[0]
    else:
        body = yaml.safe_load(patch["patch"])
    if "target" not in patch:
        assert isinstance(body, dict), f"{directory}: a JSON patch needs a target"
        target = find(objects, body["kind"], body["metadata"]["name"])
        assert target is not None, f"{directory}: patch for missing {body['kind']} {body['metadata']['name']}"
        check_containers_exist(body, target)
        return
    targets = [o for o in objects if matches(o, patch["target"])]
    assert targets, f"{directory}: patch target {patch['target']} matches nothing"
    if isinstance(body, list):
        for target in targets:
            for op in body:
                if op["op"] in ("replace", "remove", "test"):
                    assert pointer_exists(target, op["path"]), f"{directory}: {op['path']} missing in {target}"


def check_containers_exist(patch: Obj, target: Obj) -> None:
    """A strategic-merge patch naming a container that is not there would add an image-less container."""
    patched = patch.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    existing = {c["name"] for c in target["spec"]["template"]["spec"]["containers"]} if patched else set()
    for container in patched:
        assert container["name"] in existing, f"no container {container['name']} in {target['metadata']['name']}"


def matches(obj: Obj, target: Obj) -> bool:
    """Whether `obj` is selected by a patch target (kind, name, labelSelector with `=` and `in`)."""
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return all(labels.get(key) in values for key, values in parse_selector(target.get("labelSelector", "")))


def parse_selector(selector: str) -> list[tuple[str, set[str]]]:
    """`a=b, c in (d,e)` as [(a, {b}), (c, {d, e})]."""
    terms = re.findall(r"([\w./-]+)\s+in\s+\(([^)]*)\)|([\w./-]+)\s*==?\s*([\w./-]+)", selector)
    return [
        (key_in, {v.strip() for v in values.split(",")}) if key_in else (key_eq, {value})
        for key_in, values, key_eq, value in terms
    ]


def pointer_exists(obj: Any, pointer: str) -> bool:
    """Whether a JSON pointer resolves inside `obj`."""
    for part in pointer.lstrip("/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        else:
            return False
    return True


def names(objects: list[Obj], kind: str) -> set[str]:
    """Names of the rendered objects of one kind."""
    return {o["metadata"]["name"] for o in objects if o["kind"] == kind}


def test_the_overlays_are_the_ones_documented() -> None:
    assert {p.name for p in (K8S / "overlays").iterdir() if p.is_dir()} == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_patch_of_an_overlay_targets_an_object_that_exists(overlay: str) -> None:
    # The resolver runs even where kubectl is installed: kustomize itself accepts a strategic-merge patch that
    # names a missing container (it adds one without an image) and some JSON patches on missing paths.
    objects = resolve(K8S / "overlays" / overlay, "Kustomization", [])
    assert names(objects, "Deployment") >= set(LONG_RUNNING)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_a_deployment_per_long_running_service(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "an object is rendered twice"
    assert names(objects, "Deployment") >= set(LONG_RUNNING)
    for deployment in (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] in LONG_RUNNING):
        name = deployment["metadata"]["name"]
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == [name]
        assert containers[0]["args"] == [f"switchboard.{name}"]
    assert names(objects, "Job") == {"topics"}
    assert {"router", "gateway"} <= names(objects, "HorizontalPodAutoscaler")
    assert {"router", "gateway"} <= names(objects, "PodDisruptionBudget")
    assert "deny-all" in names(objects, "NetworkPolicy")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_service_autoscaler_and_budget_points_at_a_workload(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for obj in objects:
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "HorizontalPodAutoscaler":
            assert obj["spec"]["scaleTargetRef"]["name"] in names(objects, "Deployment")
            continue
        else:
            continue
        assert any(selector.items() <= labels.items() for labels in pod_labels), obj["metadata"]["name"]


def test_only_the_dev_overlay_runs_its_own_kafka_and_redis() -> None:
    assert names(render(K8S / "overlays" / "dev"), "StatefulSet") == {"kafka", "redis"}
    for overlay in ("production", "double11"):
        assert not names(render(K8S / "overlays" / overlay), "StatefulSet")
