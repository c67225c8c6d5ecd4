"""The deployment files agree with the services: compose, the Dockerfile and every kustomize overlay.

No Docker engine or cluster is needed: the files are parsed, and each overlay is rendered by kustomize (`kubectl
kustomize`, or kustomize built by `make prepare`: switchboard_tools.stack.kustomize). The small resolver below
(resources, components and generators) checks every patch against the object it targets instead of applying it.
"""

from __future__ import annotations

import ast
import base64
import datetime
import fnmatch
import functools
import json
import os
import re
import subprocess
import tomllib
import zoneinfo
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from switchboard.runtime.settings import ServiceSettings
from switchboard.runtime.topics import Topics
from switchboard_tools.stack.kustomize import ensure_kustomize
from switchboard_tools.stack.up import NOT_STARTED_BY_UP, SERVICES, module_of

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "double11")
LOCKS = ("runtime.lock", "tools.lock")
LONG_RUNNING = [name for name in SERVICES if name not in NOT_STARTED_BY_UP]
TOOLS = [name for name in SERVICES if name in NOT_STARTED_BY_UP]
# mailpit: the dev mail sink standing in for the relay of agents' e-mail replies.
COMPOSE_INFRA = {"kafka", "redis", "topics", "mailpit"}

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
        if name in TOOLS:
            # The tools run from the image of the Dockerfile's `loadtest` stage, never from the service image.
            assert svc["image"] != topics["image"], name
            assert svc["build"] == {"context": topics["build"], "target": "loadtest"}, name
        else:
            assert (svc["image"], svc["build"]) == (topics["image"], topics["build"]), name
        assert svc["command"] == [module_of(name)]
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


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """The instructions of each named stage (`FROM image AS name`), FROM itself first."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in dockerfile_instructions():
        if op == "FROM":
            current = stages.setdefault(args.split()[-1], [])
        current.append((op, args))
    return stages


def pip_installs(stage: list[tuple[str, str]]) -> list[str]:
    """Every `pip install ...` command a stage's RUN instructions run."""
    commands = [part.strip() for op, args in stage if op == "RUN" for part in args.split("&&")]
    return [command for command in commands if command.startswith("pip install")]


def test_the_service_image_installs_only_the_runtime_lock_with_hashes_checked() -> None:
    stages = dockerfile_stages()
    # The runtime stage copies its venv from `builder`; only there do third-party packages get installed.
    assert any(op == "COPY" and args.startswith("--from=builder /opt/venv") for op, args in stages["runtime"])
    installs = pip_installs(stages["builder"])
    assert installs[0] == "pip install --require-hashes --requirement requirements/runtime.lock"
    # Everything after the lock is a local distribution, installed without dependencies.
    assert all("--no-deps" in command and "-r" not in command.split() for command in installs[1:])
    assert not any("tools" in command or "--constraint" in command for command in installs)


def test_the_loadtest_image_adds_the_tools_lock_with_hashes_checked() -> None:
    stages = dockerfile_stages()
    assert stages["tools-builder"][0][1].startswith("builder AS")
    assert any(args.startswith("--from=tools-builder /opt/venv") for op, args in stages["loadtest"] if op == "COPY")
    installs = pip_installs(stages["tools-builder"])
    assert installs == [
        "pip install --require-hashes --requirement requirements/tools.lock",
        "pip install --no-deps ./tools",
    ]


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".git", ".venv", ".run"} <= ignored
    assert not {"services", "pyproject.toml", "requirements", "tools"} & ignored
    assert not any(fnmatch.fnmatch(f"requirements/{lock}", pattern) for pattern in ignored for lock in LOCKS)
    # Config and secrets are mounted at run time, never baked into the image.
    assert "config" in ignored


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
    # Tenant config is the overlays' business, never the base's.
    assert not {"routing-config", "desk-config", "agent-roster", "phone-directory", "chat-tenants"} & set(generators)


# --- rendering --------------------------------------------------------------------------------------------------


def render(directory: Path) -> list[Obj]:
    """The objects a Kustomization renders to, by kustomize."""
    out = subprocess.run([*ensure_kustomize(), str(directory)], check=True, capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]


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
    for kind_, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(key, []):
            generate(directory, kind_, generator, objects)
    for patch in kustomization.get("patches", []):
        check_patch(directory, patch, objects)
    return objects


def generate(directory: Path, kind: str, generator: Obj, objects: list[Obj]) -> None:
    """Create or merge a generated ConfigMap or Secret (Secret values base64-encoded, as kustomize renders them)."""
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    for entry in generator.get("files", []):
        key, _, path = entry.rpartition("=")
        data[key or Path(path).name] = (directory / path).read_text(encoding="utf-8")
    if kind == "Secret":
        data = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    existing = find(objects, kind, generator["name"])
    if generator.get("behavior", "create") == "create":
        assert existing is None, f"{directory}: {kind} {generator['name']} generated twice"
        objects.append({"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}, "data": data})
    else:
        assert existing is not None, f"{directory}: {kind} {generator['name']} to {generator['behavior']} is missing"
        existing.setdefault("data", {}).update(data)


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
    # The resolver runs beside kustomize: kustomize itself accepts a strategic-merge patch that
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
    assert {"router", "gateway", "chat", "email", "phone"} <= names(objects, "ScaledObject")
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
        elif obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            assert obj["spec"]["scaleTargetRef"]["name"] in names(objects, "Deployment")
            continue
        else:
            continue
        assert any(selector.items() <= labels.items() for labels in pod_labels), obj["metadata"]["name"]


def test_only_the_dev_overlay_runs_its_own_kafka_and_redis() -> None:
    assert names(render(K8S / "overlays" / "dev"), "StatefulSet") == {"kafka", "redis"}
    for overlay in ("production", "double11"):
        assert not names(render(K8S / "overlays" / overlay), "StatefulSet")


def test_redis_persists_with_an_append_only_file_fsynced_every_second(compose: dict[str, Obj]) -> None:
    """As LocalRedis does (SB_REDIS_APPENDFSYNC): AOF on, `everysec` unless `always` is chosen."""
    (redis,) = [
        o for o in render(K8S / "overlays" / "dev") if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "redis"
    ]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    for command in (args, compose["redis"]["command"]):
        assert command[command.index("--appendonly") + 1] == "yes"
        assert command[command.index("--appendfsync") + 1] in ("everysec", "${SB_REDIS_APPENDFSYNC:-everysec}")


def test_the_fsync_always_component_makes_the_in_cluster_redis_sync_every_write(tmp_path: Path) -> None:
    """components/redis-fsync-always: `always` chosen without editing redis.yaml; everything else kept."""
    (plain,) = [
        o for o in render(K8S / "overlays" / "dev") if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "redis"
    ]
    (synced,) = [
        o
        for o in rendered("dev+redis-fsync-always", tmp_path)
        if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "redis"
    ]
    before = plain["spec"]["template"]["spec"]["containers"][0]["args"]
    after = synced["spec"]["template"]["spec"]["containers"][0]["args"]
    assert after[after.index("--appendfsync") + 1] == "always"
    assert [a for a in after if a != "always"] == [a for a in before if a != "everysec"]


# --- settings: every SB_ variable a container gets is one its service reads ------------------------------------

# Read by `switchboard topics` (cli.py) besides the ServiceSettings fields.
TOPICS_ENV = {"SB_TOPIC_REPLICATION"}
# Created in the cluster by the operator, never committed: production references them by name only.
EXTERNAL = {
    "switchboard-secrets",
    "switchboard-redis",
    "routing-config",
    "desk-config",
    "agent-roster",
    "phone-directory",
    "chat-tenants",
}
CONFIG = ROOT / "config"
# Written by the Strimzi operators (components/strimzi): each service's KafkaUser password and the cluster CA.
STRIMZI_SECRETS = {"switchboard-cluster-ca-cert", *(f"switchboard-{name}" for name in LONG_RUNNING)}


def settings_class(service: str) -> type[ServiceSettings]:
    """The ServiceSettings subclass of `<module_of(service)>.settings`."""
    module = import_module(f"{module_of(service)}.settings")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module_of(service)}.settings: expected one ServiceSettings subclass, got {classes}"
    return classes[0]


def env_names(cls: type[ServiceSettings]) -> set[str]:
    """The environment variables a settings class reads: `SB_<FIELD>`, or a field's validation aliases."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    found: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            found |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            found.add(alias.upper())
        else:
            found.add(f"{prefix}{name}".upper())
    return found


def allowed_env(service: str) -> set[str]:
    """What the container of `service` (or the topics Job) may be given."""
    if service == "topics":
        return env_names(ServiceSettings) | TOPICS_ENV
    return env_names(settings_class(service))


def unknown_settings(service: str, names: set[str]) -> set[str]:
    """The `SB_` names among `names` that the service does not read (a typo or a guessed name)."""
    return {name for name in names if name.startswith("SB_")} - allowed_env(service)


def test_the_settings_names_are_found_as_pydantic_settings_reads_them() -> None:
    assert {"KAFKA_BOOTSTRAP", "SB_KAFKA_BOOTSTRAP", "SB_HTTP_PORT"} <= env_names(ServiceSettings)
    assert "SB_ROUTING_CONFIG_DIR" in allowed_env("router")
    assert "SB_ROUTING_CONFIG" not in allowed_env("router")
    assert "SB_LOADGEN_START_STACK" in allowed_env("loadgen")
    cli = (ROOT / "services" / "switchboard" / "cli.py").read_text(encoding="utf-8")
    assert all(name in cli for name in TOPICS_ENV)


def compose_env(service: Obj) -> dict[str, str]:
    """A compose service's environment as strings."""
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


@pytest.mark.parametrize("name", [*SERVICES, "topics"])
def test_compose_gives_each_service_only_settings_it_reads(compose: dict[str, Obj], name: str) -> None:
    unknown = unknown_settings(name, set(compose_env(compose[name])))
    assert not unknown, f"compose {name}: {sorted(unknown)} are not settings of {module_of(name)}"


def host_path(service: Obj, value: str) -> tuple[Path, bool] | None:
    """The host path behind a container path of a compose service, and whether it is mounted read-only."""
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if value == target or value.startswith(target.rstrip("/") + "/"):
            return (ROOT / source).resolve() / value[len(target) :].lstrip("/"), "ro" in mode
    return None


def test_every_path_in_a_compose_environment_exists_under_config(compose: dict[str, Obj]) -> None:
    checked = 0
    for name in SERVICES:
        for key, value in compose_env(compose[name]).items():
            if not value.startswith("/"):
                continue
            mapped = host_path(compose[name], value)
            assert mapped is not None, f"compose {name}: {key}={value} is on no mounted volume"
            path, read_only = mapped
            if read_only:  # config to read; a writable mount is an output folder (the load test's reports).
                assert path.is_relative_to(CONFIG), f"compose {name}: {key} reads {path}, outside ./config"
                assert path.exists(), f"compose {name}: {key}={value} is {path}, which does not exist"
                checked += 1
    assert checked >= 6


def load_settings(monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str]) -> ServiceSettings:
    """The service's settings as it would read them from exactly `env`."""
    for key in list(os.environ):
        if key.startswith("SB_") or key in ("KAFKA_BOOTSTRAP", "REDIS_URL"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings_class(service)()


def check_loaded(service: str, settings: ServiceSettings) -> None:
    """What a service needs besides parsing: the files behind its settings hold tenants, secrets are set."""
    from switchboard.chat.settings import ChatSettings
    from switchboard.email.settings import EmailSettings
    from switchboard.gateway.settings import GatewaySettings
    from switchboard.phone.settings import PhoneSettings
    from switchboard.presence.settings import PresenceSettings
    from switchboard.router.settings import RouterSettings

    if isinstance(settings, RouterSettings):
        assert settings.routing_config_dir and list(settings.config_dir().glob("*.yaml"))
    elif isinstance(settings, PresenceSettings):
        assert settings.roster_path and Path(settings.roster_path).is_file()
        assert settings.routing_config_dir and list(settings.config_dir().glob("*.yaml"))
        assert settings.operator_tokens, "the operator API would refuse everyone"
    elif isinstance(settings, GatewaySettings):
        assert settings.agents_file.is_file() and settings.jwt_secret is not None
    elif isinstance(settings, ChatSettings):
        assert settings.chat_tenants_file is not None and settings.tenants()
    elif isinstance(settings, PhoneSettings):
        assert settings.phone_directory.is_file() and settings.phone_customer_id_key
    elif isinstance(settings, EmailSettings):
        assert settings.customer_key()


@pytest.mark.parametrize("name", SERVICES)
def test_compose_settings_load_with_the_mounted_dev_config(
    compose: dict[str, Obj], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    env = compose_env(compose[name])
    for key, value in env.items():
        mapped = host_path(compose[name], value) if value.startswith("/") else None
        if mapped is not None:
            env[key] = str(mapped[0])
    check_loaded(name, load_settings(monkeypatch, name, env))


def test_compose_publishes_smtp_and_distinct_http_ports(compose: dict[str, Obj]) -> None:
    host_ports = [port.split(":")[0] for svc in compose.values() for port in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    assert "2525:2525" in compose["email"]["ports"]
    assert compose["email"]["environment"]["SB_SMTP_PORT"] == "2525"
    for name in ("gateway", "chat", "phone", "presence", "email"):
        assert any(port.endswith(":8080") for port in compose[name]["ports"]), name
    assert compose["loadgen"]["environment"]["SB_LOADGEN_START_STACK"] == "false"


# --- settings in Kubernetes -------------------------------------------------------------------------------------

RENDERED: dict[str, list[Obj]] = {}


def rendered(target: str, tmp_dir: Path) -> list[Obj]:
    """An overlay rendered once per session; `<overlay>+<component>` is the overlay with that component added."""
    if target not in RENDERED:
        overlay, _, component = target.partition("+")
        if component:
            directory = tmp_dir / f"{overlay}-{component}"
            directory.mkdir(exist_ok=True)
            up = Path(os.path.relpath(K8S, directory))
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(up / "overlays" / overlay)],
                "components": [str(up / "components" / component)],
            }
            (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
        else:
            directory = K8S / "overlays" / overlay
        RENDERED[target] = render(directory)
    return RENDERED[target]


def object_data(objects: list[Obj], kind: str, name: str) -> dict[str, str] | None:
    """The data of a rendered ConfigMap or Secret (decoded), None when it is not rendered."""
    obj = find(objects, kind, name)
    if obj is None:
        return None
    data: dict[str, str] = dict(obj.get("data") or {})
    if kind == "Secret":
        data = {key: base64.b64decode(value).decode() for key, value in data.items()}
    return {**data, **(obj.get("stringData") or {})}


def container_service(container: Obj) -> str:
    """Which switchboard service (or `topics`) a container runs."""
    args = container.get("args", [])
    if args == ["switchboard", "topics"]:
        return "topics"
    services = {module_of(name): name for name in SERVICES}
    assert args and args[0] in services, container["name"]
    return services[args[0]]


def switchboard_containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(pod spec, container) of every switchboard Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job") and obj["metadata"]["labels"].get("app.kubernetes.io/part-of") == (
            "switchboard"
        ):
            pod = obj["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield pod, container


def container_env(objects: list[Obj], target: str, pod: Obj, container: Obj) -> dict[str, str]:
    """The environment a container gets, references resolved; a reference to a missing object fails the test."""
    env: dict[str, str] = {}

    def lookup(kind: str, name: str) -> dict[str, str]:
        data = object_data(objects, kind, name)
        if data is None:
            # Only production may leave an object to the cluster, and only the documented ones.
            overlay, _, component = target.partition("+")
            if component == "strimzi" and name in STRIMZI_SECRETS:
                return {}  # written by the Strimzi operator, in whichever overlay the component is added to
            assert overlay in ("production", "double11") and name in EXTERNAL, f"{target}: no {kind} {name}"
            return {}
        return data

    for source in container.get("envFrom", []):
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref in source:
                env.update(lookup(kind, source[ref]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            key_ref = var.get("valueFrom", {}).get(ref)
            if key_ref is not None and key_ref.get("optional") and object_data(objects, kind, key_ref["name"]) is None:
                continue  # unset where the object is missing
            if key_ref is not None:
                data = lookup(kind, key_ref["name"])
                if data:
                    assert key_ref["key"] in data, f"{target}: {kind} {key_ref['name']} has no {key_ref['key']}"
                env[var["name"]] = data.get(key_ref["key"], "")
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            lookup("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume and not volume["secret"].get("optional"):
            lookup("Secret", volume["secret"]["secretName"])
    return env


K8S_TARGETS = [*OVERLAYS, "dev+loadtest"]


@pytest.mark.parametrize("target", K8S_TARGETS)
def test_k8s_gives_each_container_only_settings_its_service_reads(
    target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = rendered(target, tmp_path_factory.getbasetemp())
    services = set()
    for pod, container in switchboard_containers(objects):
        service = container_service(container)
        services.add(service)
        unknown = unknown_settings(service, set(container_env(objects, target, pod, container)))
        assert not unknown, f"{target} {service}: {sorted(unknown)} are not settings of {module_of(service)}"
    assert services >= {*LONG_RUNNING, "topics"}
    if target == "dev+loadtest":
        assert "loadgen" in services


def materialize(objects: list[Obj], pod: Obj, container: Obj, env: dict[str, str], root: Path) -> dict[str, str]:
    """Write the container's ConfigMap volumes under `root` and point path settings at them."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
    for key, value in list(env.items()):
        if not value.startswith("/"):
            continue
        mount = next((m for m in mounts if value == m["mountPath"] or value.startswith(m["mountPath"] + "/")), None)
        assert mount is not None, f"{container['name']}: {key}={value} is on no volume"
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:  # an output folder
            continue
        assert "configMap" in volume, f"{container['name']}: {key} reads volume {mount['name']}"
        data = object_data(objects, "ConfigMap", volume["configMap"]["name"])
        assert data, f"{container['name']}: ConfigMap {volume['configMap']['name']} is empty or missing"
        folder = root / container["name"] / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in data.items():
            (folder / name).write_text(text, encoding="utf-8")
        rest = value[len(mount["mountPath"]) :].lstrip("/")
        assert not rest or rest in data, f"{container['name']}: {key}={value} but the ConfigMap holds {sorted(data)}"
        env[key] = str(folder / rest) if rest else str(folder)
    return env


@pytest.mark.parametrize("target", ["dev", "dev+loadtest"])
def test_k8s_dev_settings_load_from_the_generated_config_and_secrets(
    target: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = rendered(target, tmp_path_factory.getbasetemp())
    for pod, container in switchboard_containers(objects):
        service = container_service(container)
        env = materialize(objects, pod, container, container_env(objects, target, pod, container), tmp_path)
        if service == "topics":
            continue
        with monkeypatch.context() as patch:
            check_loaded(service, load_settings(patch, service, env))


def test_the_email_service_exposes_smtp_and_the_policies_let_it_in() -> None:
    objects = render(K8S / "overlays" / "dev")
    service = find(objects, "Service", "email")
    assert service is not None
    smtp = next(port for port in service["spec"]["ports"] if port["name"] == "smtp")
    deployment = find(objects, "Deployment", "email")
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container_port = next(p["containerPort"] for p in container["ports"] if p["name"] == smtp["targetPort"])
    smtp_env = next(var["value"] for var in container["env"] if var["name"] == "SB_SMTP_PORT")
    assert int(smtp_env) == container_port
    policy = find(objects, "NetworkPolicy", "allow-smtp-ingress")
    assert policy is not None
    assert container_port in {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}


# --- the dev overlay's copies of config/ --------------------------------------------------------------------------

DEV_CONFIG = K8S / "overlays" / "dev" / "config"
COPIES = {
    **{DEV_CONFIG / "routing" / p.name: p for p in sorted((CONFIG / "routing").glob("*.yaml"))},
    **{DEV_CONFIG / "routing" / p.name: p for p in sorted((CONFIG / "routing").glob("*.examples.txt"))},
    **{DEV_CONFIG / "desk" / p.name: p for p in sorted((CONFIG / "desk").glob("*.yaml"))},
    DEV_CONFIG / "agents" / "dev-agents.yaml": CONFIG / "agents" / "dev-agents.yaml",
    DEV_CONFIG / "phone" / "dev-numbers.yaml": CONFIG / "phone" / "dev-numbers.yaml",
    **{
        K8S / "components" / "loadtest" / "scenarios" / p.name: p for p in sorted((CONFIG / "scenarios").glob("*.yaml"))
    },
}


@pytest.mark.parametrize("copy", sorted(COPIES), ids=lambda p: p.relative_to(K8S).as_posix())
def test_kustomize_copies_of_config_files_are_up_to_date(copy: Path) -> None:
    # kustomize reads no file outside a kustomization's folder, so the generators read copies.
    original = COPIES[copy]
    assert copy.exists(), f"cp {original.relative_to(ROOT)} {copy.relative_to(ROOT)}"
    assert copy.read_bytes() == original.read_bytes(), f"cp {original.relative_to(ROOT)} {copy.relative_to(ROOT)}"


def test_every_routing_config_is_in_the_dev_routing_config_map() -> None:
    generators = {
        g["name"]: g for g in load_yaml(K8S / "overlays" / "dev" / "kustomization.yaml")["configMapGenerator"]
    }
    files = {Path(entry).name for entry in generators["routing-config"]["files"]}
    # Each config and the labelled examples its classifier trains on (the held-out set under eval/ stays out).
    wanted = [*(CONFIG / "routing").glob("*.yaml"), *(CONFIG / "routing").glob("*.examples.txt")]
    assert files == {p.name for p in wanted}


def test_the_dev_email_adapter_names_the_shops_of_the_dev_routing_configs(compose: dict[str, Obj]) -> None:
    # Its metrics' tenant label (docs/metrics.md): the dev shops, not `unknown`.
    shops = sorted(p.stem for p in (CONFIG / "routing").glob("*.yaml"))
    assert sorted(json.loads(compose["email"]["environment"]["SB_EMAIL_TENANTS"])) == shops
    generators = {
        g["name"]: g for g in load_yaml(K8S / "overlays" / "dev" / "kustomization.yaml")["configMapGenerator"]
    }
    literals = dict(entry.split("=", 1) for entry in generators["email-env"]["literals"])
    assert sorted(json.loads(literals["SB_EMAIL_TENANTS"])) == shops


def test_dev_chat_tenants_are_config_chat_without_secrets_and_the_secrets_are_in_the_secret() -> None:
    dev = load_yaml(CONFIG / "chat" / "dev-tenants.yaml")["tenants"]
    public = load_yaml(DEV_CONFIG / "chat" / "tenants.yaml")["tenants"]
    assert set(public) == set(dev)
    assert not any("secret" in (entry or {}) for entry in public.values()), "secrets belong in the Secret"
    objects = render(K8S / "overlays" / "dev")
    secrets = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].startswith("switchboard-sec"))
    chat = json.loads(base64.b64decode(secrets["data"]["chat-tenant-secrets"]))
    assert chat == {tenant: entry["secret"] for tenant, entry in dev.items()}


def test_production_commits_no_secret_values() -> None:
    for overlay in ("production", "double11"):
        assert "Secret" not in {o["kind"] for o in render(K8S / "overlays" / overlay)}, overlay
        assert "secretGenerator" not in load_yaml(K8S / "overlays" / overlay / "kustomization.yaml")


# --- the image's package data -----------------------------------------------------------------------------------


def test_every_data_file_of_the_package_is_installed_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]["*"]
    package = ROOT / "services" / "switchboard"
    data = [
        path
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc")
    ]
    assert any(path.suffix == ".lua" for path in data)
    missing = [p.relative_to(package) for p in data if not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    assert not missing, f"not installed into the image (pyproject package-data): {missing}"


def interpolate(value: str, variables: dict[str, str]) -> str:
    """`${NAME}`, `${NAME:?message}` and `$$` as docker compose interpolates them (a missing `:?` one fails)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, required = match.group(1), match.group(2) is not None
        if required and name not in variables:
            raise ValueError(f"compose would stop: {name} is not set")
        return variables.get(name, "")

    return re.sub(r"\$\$|\$\{(\w+)(:\?[^}]*)?\}", substitute, value)


def effective_env(base: Obj, override: Obj, env_file: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    """A container's environment under `-f docker-compose.yml -f docker-compose.loadtest.yml`: `environment` (the
    two files merged key by key, the override winning) beats `env_file`; `variables` are `--env-file`'s."""
    given = {**compose_env(base), **compose_env(override)}
    return {**env_file, **{key: interpolate(value, variables) for key, value in given.items()}}


def env_file_of(service: Obj, printed: dict[str, str]) -> dict[str, str]:
    """What a service's `env_file:` would bring: the printed env file, when the service names it."""
    return dict(printed) if service.get("env_file") else {}


def test_the_compose_loadtest_override_gives_each_service_the_runs_settings(tmp_path: Path) -> None:
    from switchboard_tools.loadgen.run import write_config
    from switchboard_tools.loadgen.settings import LoadgenSettings

    compose_file = load_yaml(ROOT / "docker-compose.yml")["services"]
    scenario = compose_file["loadgen"]["environment"]["SB_LOADGEN_SCENARIO"]
    mapped = host_path(compose_file["loadgen"], scenario)
    assert mapped is not None
    # What `switchboard loadtest --write-config` prints into reports/stack-config.env.
    printed = write_config(LoadgenSettings(loadgen_scenario=str(mapped[0])), tmp_path / "stack-config")
    override: dict[str, Obj] = load_yaml(ROOT / "docker-compose.loadtest.yml")["services"]
    assert set(override) == set(LONG_RUNNING)
    written = ROOT / "reports" / "stack-config"
    for name, svc in override.items():
        env = effective_env(compose_file[name], svc, env_file_of(svc, printed), variables=printed)
        assert not unknown_settings(name, set(compose_env(svc))), name
        for key in set(printed) & allowed_env(name):
            value, run_value = env.get(key), printed[key]
            assert value is not None, f"{name}: {key} of the run is not given"
            if run_value.startswith(str(tmp_path)):
                # The env file names the host's path; the container reads the same file on its read-only mount.
                target = host_path(svc, value)
                assert target is not None and target[1], f"{name}: {key}={value} is on no read-only mount"
                assert target[0].relative_to(written) == Path(run_value).relative_to(tmp_path / "stack-config")
            else:
                # The run's secrets and names themselves, not the dev values of docker-compose.yml.
                assert value == run_value, f"{name}: {key} is {value!r}, not the run's value"
        for key, value in compose_env(svc).items():
            if value.startswith("/"):
                target = host_path(svc, value)
                assert target is not None and target[1], f"{name}: {key}={value} is on no read-only mount"
                assert (tmp_path / "stack-config" / target[0].relative_to(written)).exists(), f"{name}: {key}"


def test_the_loadtest_override_stops_compose_without_the_runs_env_file() -> None:
    override: dict[str, Obj] = load_yaml(ROOT / "docker-compose.loadtest.yml")["services"]
    secrets = [value for svc in override.values() for value in compose_env(svc).values() if "${" in value]
    assert secrets
    for value in secrets:
        with pytest.raises(ValueError, match="compose would stop"):
            interpolate(value, {})
    # Every documented command that uses the override passes the run's env file for those values.
    for doc in (ROOT / "deploy" / "README.md", ROOT / "docker-compose.loadtest.yml"):
        commands = [
            line for line in doc.read_text(encoding="utf-8").splitlines() if "-f docker-compose.loadtest.yml" in line
        ]
        assert commands, doc
        assert all("--env-file reports/stack-config.env" in line for line in commands), doc


# --- every overlay x component, rendered and validated strictly offline -----------------------------------------

# Checked against this Kubernetes version's schemas (kubernetes-validate ships them), strict: an unknown field fails.
KUBERNETES_VERSION = "1.33.0"
# CRD schemas of the operators the manifests use (KEDA, Strimzi, Prometheus Operator, Gateway API); README there
# says where each file came from.
SCHEMAS = K8S / "schemas"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def overlay_names() -> list[str]:
    """Every overlay folder."""
    return sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


def component_names() -> list[str]:
    """Every component folder."""
    return sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").is_file())


def included_components(directory: Path) -> set[str]:
    """The components a Kustomization brings in already, itself or through the Kustomizations it builds on."""
    kustomization = load_yaml(directory / "kustomization.yaml")
    found = {(directory / entry).resolve().name for entry in kustomization.get("components", [])}
    for entry in kustomization.get("resources", []):
        if (directory / entry).is_dir():
            found |= included_components(directory / entry)
    return found


def render_targets() -> list[str]:
    """Every overlay alone, and with each component it does not include already (`overlay+component`)."""
    targets: list[str] = []
    for overlay in overlay_names():
        included = included_components(K8S / "overlays" / overlay)
        targets += [overlay, *(f"{overlay}+{name}" for name in component_names() if name not in included)]
    return targets


def strict(schema: Any) -> Any:
    """A copy of a JSON schema in which every object with listed properties refuses any other property.

    The API server prunes unknown fields of a custom resource (and `kubectl apply` refuses them with strict field
    validation), so a misspelt field would be dropped silently; here it fails. A schema that preserves unknown
    fields (x-kubernetes-preserve-unknown-fields) or says what extra properties may hold is left as it is.
    """
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "$defs", "definitions"):
            copy[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf", "prefixItems"):
            copy[key] = strict(value)
        else:
            copy[key] = value
    if (
        "properties" in copy
        and "additionalProperties" not in copy
        and not copy.get("x-kubernetes-preserve-unknown-fields")
    ):
        copy["additionalProperties"] = False
    return copy


def vendored_schemas() -> Iterator[tuple[Path, str, str, Obj]]:
    """(file, apiVersion, kind, JSON schema) of every served version in deploy/k8s/schemas."""
    for path in sorted(SCHEMAS.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            for crd in load_docs(path):
                assert crd["kind"] == "CustomResourceDefinition", path
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        api_version = f"{crd['spec']['group']}/{version['name']}"
                        yield path, api_version, crd["spec"]["names"]["kind"], version["schema"]["openAPIV3Schema"]
        elif path.suffix == ".json":
            schema = json.loads(path.read_text(encoding="utf-8"))
            for gvk in schema["x-kubernetes-group-version-kind"]:
                yield path, f"{gvk['group']}/{gvk['version']}", gvk["kind"], schema


def with_object_root(schema: Obj) -> Obj:
    """The schema with `apiVersion`, `kind` and `metadata` at its root, as every object has them: fabric8's
    generated CRDs (Gateway API) list only `spec` and `status` there, and `strict` would refuse the rest."""
    root = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**root, **schema.get("properties", {})}}


_VALIDATORS: dict[tuple[str, str], Any] = {}


def custom_validators() -> dict[tuple[str, str], Any]:
    """A strict validator per (apiVersion, kind) of the vendored CRD schemas, plus one for ObjectMeta."""
    if not _VALIDATORS:
        import jsonschema
        from kubernetes_validate.utils import schema_contents
        from referencing import Registry, Resource

        for path, api_version, kind, schema in vendored_schemas():
            assert (api_version, kind) not in _VALIDATORS, f"{path}: a second schema for {kind} {api_version}"
            _VALIDATORS[api_version, kind] = jsonschema.Draft202012Validator(strict(with_object_root(schema)))
        # A custom resource's schema says only `metadata: object`; its metadata is checked as the API server does.
        definitions = schema_contents(
            f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json", KUBERNETES_VERSION
        )
        registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
        _VALIDATORS["v1", "ObjectMeta"] = jsonschema.Draft202012Validator({"$ref": OBJECT_META}, registry=registry)
    return _VALIDATORS


def schema_problems(obj: Obj) -> list[str]:
    """What is wrong with one rendered object against its schema; an object of a kind without one is a problem."""
    import kubernetes_validate

    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    validators = custom_validators()
    validator = validators.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if validator is None:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            return [f"{where}: {exc.message}; vendor its CRD schema under deploy/k8s/schemas"]
        except kubernetes_validate.ValidationError as exc:
            return [f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}"]
        return []
    errors = [*validator.iter_errors(obj), *validators["v1", "ObjectMeta"].iter_errors(obj.get("metadata", {}))]
    return [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_every_overlay_and_component_is_rendered() -> None:
    targets = render_targets()
    assert set(OVERLAYS) <= set(targets)
    assert {f"production+{name}" for name in component_names()} <= set(targets)
    # dev brings local-infra itself: adding it again would render Kafka twice.
    assert "dev+local-infra" not in targets


@pytest.mark.parametrize("target", render_targets())
def test_every_rendered_object_is_valid_against_its_schema_in_strict_mode(
    target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = rendered(target, tmp_path_factory.getbasetemp())
    assert objects
    problems = [problem for obj in objects for problem in schema_problems(obj)]
    assert not problems, f"{target}:\n" + "\n".join(problems)


def test_strict_validation_refuses_unknown_fields_wrong_types_and_kinds_without_a_schema() -> None:
    deployment = load_docs(K8S / "base" / "router.yaml")[0]
    assert schema_problems(deployment) == []
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert schema_problems(typo)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "router"},
        "spec": {"scaleTargetRef": {"name": "router"}, "triggers": [{"type": "cpu", "metadata": {"value": "70"}}]},
    }
    assert schema_problems(scaled) == []
    assert schema_problems({**scaled, "spec": {**scaled["spec"], "maxReplicas": 6}})
    assert schema_problems({**scaled, "metadata": {"name": "router", "label": {}}})
    topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partitions": "twelve"},
    }
    assert schema_problems(topic)
    assert schema_problems({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}})


def test_every_vendored_schema_says_where_it_came_from() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    files = {path for path, *_ in vendored_schemas()}
    kinds = {kind for _, _, kind, _ in vendored_schemas()}
    assert {"ScaledObject", "TriggerAuthentication", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"} <= kinds
    assert {"PodMonitor", "ServiceMonitor", "PrometheusRule", "HTTPRoute"} <= kinds
    for path in files:
        assert path.relative_to(SCHEMAS).as_posix() in readme, f"{path.name}: say in README.md where it came from"


# --- what each service reads and writes on Kafka, read from its code ---------------------------------------------
# The autoscalers' lag triggers and the Strimzi KafkaUsers' ACLs are checked against this: a service that starts
# consuming another topic or group, or writing to one, fails the tests until the manifests follow.

PACKAGE = ROOT / "services" / "switchboard"
TOPIC_PROPERTIES = {"inbound", "routing", "presence", "outbound", "commands", "dlq"}


@functools.cache
def module_file(name: str) -> Path | None:
    """The source file of a switchboard module, None for anything else."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


@functools.cache
def parsed(name: str) -> ast.Module:
    """The syntax tree of a switchboard module."""
    path = module_file(name)
    assert path is not None, name
    return ast.parse(path.read_text(encoding="utf-8"))


def absolute(name: str, node: ast.ImportFrom) -> str:
    """The module a `from ... import` in module `name` reads from."""
    if not node.level:
        return node.module or ""
    package = name if str(module_file(name)).endswith("__init__.py") else name.rpartition(".")[0]
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


@functools.cache
def imported_modules(name: str) -> frozenset[str]:
    """The switchboard modules one module imports (absolute and relative imports, `from x import module` too)."""
    found: set[str] = set()
    for node in ast.walk(parsed(name)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = absolute(name, node)
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return frozenset(module for module in found if module.startswith("switchboard.") and module_file(module))


@functools.cache
def service_modules(service: str) -> frozenset[str]:
    """Every switchboard module the service's process imports, following imports from `switchboard.<service>`."""
    seen: set[str] = set()
    todo = [f"switchboard.{service}", f"switchboard.{service}.__main__"]
    while todo:
        name = todo.pop()
        if name not in seen and module_file(name):
            seen.add(name)
            todo += imported_modules(name)
    return frozenset(seen)


@functools.cache
def own_constants(name: str) -> dict[str, str]:
    """A module's top-level string constants (NAME = "value")."""
    constants: dict[str, str] = {}
    for node in parsed(name).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            constants |= {t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)}
    return constants


def module_constants(name: str) -> dict[str, str]:
    """The string constants a module can name: its own and those it imports by name from a switchboard module."""
    constants = dict(own_constants(name))
    for node in parsed(name).body:
        if isinstance(node, ast.ImportFrom) and module_file(absolute(name, node)):
            source = own_constants(absolute(name, node))
            constants |= {a.asname or a.name: source[a.name] for a in node.names if a.name in source}
    return constants


def group_name(expr: ast.expr, constants: dict[str, str]) -> str:
    """A consumer group id as the code builds it, without SB_TOPIC_PREFIX; a per-replica part reads `*`."""
    assert isinstance(expr, ast.JoinedStr), ast.unparse(expr)
    parts: list[str] = []
    for value in expr.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue):
            source = ast.unparse(value.value)
            if source.endswith("topic_prefix"):
                continue
            name = source.rpartition(".")[2]
            parts.append(constants.get(name, "*"))
    return "".join(parts)


def topic_of(expr: ast.expr) -> str | None:
    """The topic an expression names (`topics.inbound`, `self._topics.routing`, `self.routing_topic`), if any."""
    if not isinstance(expr, ast.Attribute):
        return None
    name = expr.attr.removesuffix("_topic")
    mentions_topics = "topic" in expr.attr or any(
        (isinstance(node, ast.Name) and "topic" in node.id.lower())
        or (isinstance(node, ast.Attribute) and "topic" in node.attr.lower())
        or (isinstance(node, ast.Call) and ast.unparse(node.func) == "Topics")
        for node in ast.walk(expr.value)
    )
    return str(getattr(Topics(), name)) if name in TOPIC_PROPERTIES and mentions_topics else None


def kafka_usage(service: str) -> tuple[set[tuple[str, str]], set[str]]:
    """((consumer group, topic) the service consumes, topics it produces to), from its code."""
    modules = service_modules(service)
    consumes: set[tuple[str, str]] = set()
    produces: set[str] = set()
    for name in modules:
        for node in ast.walk(parsed(name)):
            if not isinstance(node, ast.Call):
                continue
            if ast.unparse(node.func) == "BatchConsumer":
                keywords = {k.arg: k.value for k in node.keywords}
                group = group_name(keywords["group_id"], module_constants(name))
                topics_expr = keywords["topics"]
                assert isinstance(topics_expr, ast.List), f"{name}: topics= as a list literal"
                for element in topics_expr.elts:
                    topic = topic_of(element)
                    assert topic is not None, f"{name}: cannot tell the topic of {ast.unparse(element)}"
                    consumes.add((group, topic))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in ("send", "send_many") and node.args:
                topic = topic_of(node.args[0])
                if topic is not None:
                    produces.add(topic)
    return consumes, produces


def topic_reads(service: str) -> set[str]:
    """Topics the service reads whole without a consumer group (`runtime.topic_reader.read_topic_to_end`)."""
    reads: set[str] = set()
    for name in service_modules(service):
        for node in ast.walk(parsed(name)):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("read_topic_to_end") and node.args[1:]:
                topic = topic_of(node.args[1])
                assert topic is not None, f"{name}: cannot tell the topic of {ast.unparse(node.args[1])}"
                reads.add(topic)
    return reads


def test_kafka_usage_is_read_from_the_code_as_the_services_use_kafka() -> None:
    # What the code says today, spelled out once so that the reader itself is checked.
    consumes, produces = kafka_usage("router")
    assert consumes == {
        ("router", "sb.inbound.v1"),
        ("router", "sb.commands.v1"),
        ("router-presence", "sb.presence.v1"),
    }
    assert {"sb.routing.v1", "sb.outbound.v1", "sb.dlq.v1"} <= produces
    consumes, produces = kafka_usage("gateway")
    assert consumes == {("gateway-board-*", "sb.routing.v1")}
    assert {"sb.commands.v1", "sb.outbound.v1", "sb.routing.v1"} <= produces
    assert kafka_usage("email")[0] == {("email-outbound", "sb.outbound.v1"), ("email-acks", "sb.routing.v1")}
    assert kafka_usage("phone") == (set(), {"sb.inbound.v1", "sb.dlq.v1"})
    # presence reads its compacted topic whole when it rebuilds what Redis lost
    assert topic_reads("presence") == {"sb.presence.v1"}


# --- autoscaling: KEDA ScaledObjects ------------------------------------------------------------------------------

INBOUND_PARTITIONS = next(spec.partitions for spec in Topics().specs() if spec.name == Topics().inbound)
AUTOSCALED = {"router", "gateway", "chat", "email", "phone"}


def scaled_objects(objects: list[Obj]) -> dict[str, Obj]:
    """The rendered ScaledObjects by the name of the Deployment they scale."""
    return {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == "ScaledObject"}


def triggers(scaled: Obj, kind: str) -> list[Obj]:
    """The triggers of one type."""
    return [t for t in scaled["spec"]["triggers"] if t["type"] == kind]


@pytest.mark.parametrize("target", render_targets())
def test_no_workload_is_scaled_by_both_an_hpa_and_a_scaled_object(
    target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    objects = rendered(target, tmp_path_factory.getbasetemp())
    hpa_targets = [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    keda_targets = [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "ScaledObject"]
    assert len(keda_targets) == len(set(keda_targets)), "two ScaledObjects scale one Deployment"
    assert not set(hpa_targets) & set(keda_targets), "an HPA and a ScaledObject scale the same Deployment"
    assert set(keda_targets) >= AUTOSCALED
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for name in set(keda_targets) | set(hpa_targets):
        assert name in deployments, f"{name}: scaled but not rendered"
        # A fixed count would reset the autoscaler's on every apply (to 2 at the peak of a promo).
        assert "replicas" not in deployments[name]["spec"], f"{target}: {name} has fixed replicas and an autoscaler"


@pytest.mark.parametrize("target", render_targets())
def test_the_router_never_scales_beyond_the_inbound_partitions(
    target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    router = scaled_objects(rendered(target, tmp_path_factory.getbasetemp()))["router"]
    assert router["spec"]["maxReplicaCount"] <= INBOUND_PARTITIONS
    if not target.startswith("dev"):
        assert router["spec"]["maxReplicaCount"] == INBOUND_PARTITIONS
    for scaled in scaled_objects(rendered(target, tmp_path_factory.getbasetemp())).values():
        spec = scaled["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], scaled["metadata"]["name"]
        for cron in triggers(scaled, "cron"):
            assert int(cron["metadata"]["desiredReplicas"]) <= spec["maxReplicaCount"], scaled["metadata"]["name"]


def test_consumers_scale_on_the_lag_of_the_groups_and_topics_their_code_consumes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for overlay in overlay_names():
        objects = rendered(overlay, tmp_path_factory.getbasetemp())
        for service, scaled in scaled_objects(objects).items():
            consumes, _ = kafka_usage(service)
            lag = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers(scaled, "kafka")}
            assert lag <= consumes, f"{overlay} {service}: {lag - consumes} is not consumed by {service}"
            # Every group shared by the replicas has its backlog watched; a per-replica group (the gateway's
            # board view, every replica reads everything) says nothing about the replica count.
            shared = {pair for pair in consumes if "*" not in pair[0]}
            assert shared <= lag, f"{overlay} {service}: no lag trigger for {shared - lag}"
            for trigger in triggers(scaled, "kafka"):
                assert trigger["metadata"]["allowIdleConsumers"] == "false"
                assert int(trigger["metadata"]["lagThreshold"]) > 0
        assert set(scaled_objects(objects)) == AUTOSCALED


def test_the_gateway_scales_on_open_desk_sockets_and_phone_on_open_streams(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests import metrics_doc

    for overlay in overlay_names():
        scaled = scaled_objects(rendered(overlay, tmp_path_factory.getbasetemp()))
        for service, kind in (("gateway", "desk"), ("phone", "phone_stream")):
            (prometheus,) = triggers(scaled[service], "prometheus")
            # Per replica, so summed over the replicas (docs/metrics.md).
            assert prometheus["metadata"]["query"] == (
                f'sum(sb_websocket_connections{{service="{service}",kind="{kind}"}})'
            )
            assert float(prometheus["metadata"]["threshold"]) > 0
    for service in ("gateway", "phone"):
        assert "sb_websocket_connections" in metrics_doc.for_service(service), f"docs/metrics.md: {service}"


def cron_window(metadata: Obj, year: int) -> tuple[datetime.datetime, datetime.datetime]:
    """The start and end of a KEDA cron trigger with fixed day and month, in its time zone."""
    zone = zoneinfo.ZoneInfo(metadata["timezone"])

    def at(expression: str) -> datetime.datetime:
        minute, hour, day, month, weekday = expression.split()
        assert weekday == "*", expression
        return datetime.datetime(year, int(month), int(day), int(hour), int(minute), tzinfo=zone)

    return at(metadata["start"]), at(metadata["end"])


def test_double11_prescales_every_autoscaled_service_before_midnight_in_shanghai(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    scaled = scaled_objects(rendered("double11", tmp_path_factory.getbasetemp()))
    production = scaled_objects(rendered("production", tmp_path_factory.getbasetemp()))
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    for service in AUTOSCALED:
        windows = [cron_window(t["metadata"], 2027) for t in triggers(scaled[service], "cron")]
        for month, day in ((11, 11), (6, 18)):
            midnight = datetime.datetime(2027, month, day, tzinfo=shanghai)
            # Up and ready well before the step: pods need scheduling, image pulls, Kafka group joins.
            assert any(
                start <= midnight - datetime.timedelta(hours=1) and end >= midnight + datetime.timedelta(hours=2)
                for start, end in windows
            ), f"{service}: no cron floor around {month}-{day} 00:00 Asia/Shanghai"
        desired = {int(t["metadata"]["desiredReplicas"]) for t in triggers(scaled[service], "cron")}
        assert min(desired) > production[service]["spec"]["minReplicaCount"], service
        assert not triggers(production[service], "cron"), "production runs without the promo floor"
    router_desired = {int(t["metadata"]["desiredReplicas"]) for t in triggers(scaled["router"], "cron")}
    assert router_desired == {INBOUND_PARTITIONS}


# --- Strimzi: the production Kafka option -------------------------------------------------------------------------

STRIMZI = "production+strimzi"
STRIMZI_BOOTSTRAP = "switchboard-kafka-bootstrap:9093"


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    """The rendered objects of one kind by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def expected_acls(service: str) -> dict[tuple[str, str, str], set[str]]:
    """The least-privilege ACLs of a service, from what its code consumes and produces."""
    consumes, produces = kafka_usage(service)
    acls: dict[tuple[str, str, str], set[str]] = {}
    for group, topic in consumes:
        acls.setdefault(("topic", topic, "literal"), set()).update({"Read", "Describe"})
        pattern = ("group", group.rstrip("*"), "prefix" if group.endswith("*") else "literal")
        acls.setdefault(pattern, set()).add("Read")
    for topic in produces:
        acls.setdefault(("topic", topic, "literal"), set()).update({"Write", "Describe"})
    for topic in topic_reads(service):
        acls.setdefault(("topic", topic, "literal"), set()).update({"Read", "Describe"})
    return acls


def test_strimzi_has_a_kafka_topic_per_topic_of_the_code_with_its_layout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    objects = rendered(STRIMZI, tmp_path_factory.getbasetemp())
    topics = by_kind(objects, "KafkaTopic")
    specs = {spec.name: spec for spec in Topics().specs()}
    assert {t["spec"].get("topicName", name) for name, t in topics.items()} == set(specs)
    for name, topic in topics.items():
        spec = specs[topic["spec"].get("topicName", name)]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "switchboard"
        assert topic["spec"]["partitions"] == spec.partitions, name
        config = {key: str(value) for key, value in topic["spec"]["config"].items()}
        assert spec.configs().items() <= config.items(), f"{name}: {config} lacks {spec.configs()}"
        assert topic["spec"]["replicas"] == 3 and config["min.insync.replicas"] == "2", name
    assert "Job" not in {o["kind"] for o in objects}, "the topic operator replaces the topics Job"


def test_strimzi_kafka_is_kraft_with_a_tls_scram_listener_and_acls(tmp_path_factory: pytest.TempPathFactory) -> None:
    objects = rendered(STRIMZI, tmp_path_factory.getbasetemp())
    (kafka,) = by_kind(objects, "Kafka").values()
    assert kafka["metadata"]["name"] == STRIMZI_BOOTSTRAP.partition("-kafka-bootstrap")[0]
    listener = next(item for item in kafka["spec"]["kafka"]["listeners"] if item["name"] == "tls")
    assert (listener["port"], listener["tls"], listener["authentication"]["type"]) == (9093, True, "scram-sha-512")
    assert str(listener["port"]) == STRIMZI_BOOTSTRAP.rpartition(":")[2]
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    roles = [role for pool in by_kind(objects, "KafkaNodePool").values() for role in pool["spec"]["roles"]]
    assert {"controller", "broker"} <= set(roles)
    for pool in by_kind(objects, "KafkaNodePool").values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert pool["spec"]["replicas"] >= 3


def test_strimzi_users_grant_each_service_only_what_its_code_reads_and_writes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    users = by_kind(rendered(STRIMZI, tmp_path_factory.getbasetemp()), "KafkaUser")
    assert set(users) == {f"switchboard-{name}" for name in LONG_RUNNING} | {"switchboard-dlq"}
    for name in LONG_RUNNING:
        spec = users[f"switchboard-{name}"]["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        granted: dict[tuple[str, str, str], set[str]] = {}
        for acl in spec["authorization"]["acls"]:
            resource = acl["resource"]
            key = (resource["type"], resource["name"], resource.get("patternType", "literal"))
            assert key not in granted, f"{name}: {key} twice"
            assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*", name
            granted[key] = set(acl["operations"])
        assert granted == expected_acls(name), name
    assert acls_of(users["switchboard-dlq"]) == dlq_acls()


def acls_of(user: Obj) -> dict[tuple[str, str, str], set[str]]:
    """A KafkaUser's ACLs as {(resource type, name, pattern type): operations}."""
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal")): set(
            acl["operations"]
        )
        for acl in user["spec"]["authorization"]["acls"]
    }


def dlq_acls() -> dict[tuple[str, str, str], set[str]]:
    """What `switchboard dlq` needs: read the DLQ (no group), re-drive to any other topic, mark, in its transaction."""
    from switchboard.dlq.redrive import transactional_id

    topics = Topics()
    acls = {("topic", spec.name, "literal"): {"Write", "Describe"} for spec in topics.specs()}
    acls["topic", topics.dlq, "literal"] = {"Read", "Write", "Describe"}
    acls["transactionalId", transactional_id(topics), "literal"] = {"Write", "Describe"}
    return acls


def test_strimzi_services_connect_over_sasl_ssl_as_their_own_user(tmp_path_factory: pytest.TempPathFactory) -> None:
    objects = rendered(STRIMZI, tmp_path_factory.getbasetemp())
    users = by_kind(objects, "KafkaUser")
    services = set()
    for pod, container in switchboard_containers(objects):
        service = container_service(container)
        services.add(service)
        env = container_env(objects, STRIMZI, pod, container)
        assert env["KAFKA_BOOTSTRAP"] == STRIMZI_BOOTSTRAP, service
        assert env["SB_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["SB_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["SB_KAFKA_SASL_USERNAME"] == f"switchboard-{service}" and env["SB_KAFKA_SASL_USERNAME"] in users
        password = next(var for var in container["env"] if var["name"] == "SB_KAFKA_SASL_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {"name": f"switchboard-{service}", "key": "password"}
        ca_file = Path(env["SB_KAFKA_SSL_CA_FILE"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(ca_file.parent))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "switchboard-cluster-ca-cert"
        assert {"key": "ca.crt", "path": ca_file.name} in volume["secret"]["items"]
    assert services == set(LONG_RUNNING)


def test_strimzi_lag_triggers_read_the_cluster_as_the_scaled_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    objects = rendered(STRIMZI, tmp_path_factory.getbasetemp())
    authentications = by_kind(objects, "TriggerAuthentication")
    checked = 0
    for scaled in scaled_objects(objects).values():
        namespace = scaled["metadata"]["namespace"]
        for trigger in triggers(scaled, "kafka"):
            # KEDA connects from its own namespace: the bootstrap Service by its namespaced name.
            assert trigger["metadata"]["bootstrapServers"] == STRIMZI_BOOTSTRAP.replace(":", f".{namespace}.svc:")
            assert "bootstrapServersFromEnv" not in trigger["metadata"]
            auth = authentications[trigger["authenticationRef"]["name"]]["spec"]
            assert {e["parameter"]: e["name"] for e in auth["env"]} == {
                "username": "SB_KAFKA_SASL_USERNAME",
                "password": "SB_KAFKA_SASL_PASSWORD",
            }
            assert {"parameter": "ca", "name": "switchboard-cluster-ca-cert", "key": "ca.crt"} in auth[
                "secretTargetRef"
            ]
            checked += 1
    assert checked >= 7


def test_strimzi_containers_get_only_settings_their_service_reads(tmp_path_factory: pytest.TempPathFactory) -> None:
    objects = rendered(STRIMZI, tmp_path_factory.getbasetemp())
    for pod, container in switchboard_containers(objects):
        service = container_service(container)
        unknown = unknown_settings(service, set(container_env(objects, STRIMZI, pod, container)))
        assert not unknown, f"{STRIMZI} {service}: {sorted(unknown)} are not settings of {module_of(service)}"


# --- house rules on every rendered workload ----------------------------------------------------------------------

# Every overlay, alone and with each component it does not include already.
HOUSE_TARGETS = render_targets()
HTTP_PORT, INTERNAL_PORT = 8080, 9090
# What never goes through the public entrance: the internal port's paths.
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz", "/v1/operator")
WEBSOCKET_PATHS = {"/desk": "gateway", "/chat/v1/ws": "chat", "/v1/phone/stream": "phone"}
PAGE_PATHS = {"/desk": "gateway", "/board": "gateway", "/assets": "gateway", "/login": "gateway"}
DEV_INFRA = ("kafka:9092", "redis://redis:", "mailpit")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
HOUSE_RENDERED: dict[str, list[Obj]] = {}


# deploy/README.md: an overlay that adds the load test to production pins the load generator's image itself
# (production's `images` apply to production's own objects only).
LOADGEN_PIN = {
    "name": "switchboard-loadtest",
    "newName": "registry.example.com/switchboard/switchboard-loadtest",
    "digest": "sha256:" + "0" * 64,
}


def house_rendered(target: str, tmp_dir: Path) -> list[Obj]:
    """`overlay[+component...]` rendered once per session, as the overlay an operator writes for it."""
    if target not in HOUSE_RENDERED:
        overlay, *components = target.split("+")
        directory = tmp_dir / f"house-{target.replace('+', '-')}"
        directory.mkdir(exist_ok=True)
        up = Path(os.path.relpath(K8S, directory))
        kustomization: Obj = {
            "resources": [str(up / "overlays" / overlay)],
            "components": [str(up / "components" / name) for name in components],
        }
        if overlay != "dev" and "loadtest" in components:
            kustomization["images"] = [LOADGEN_PIN]
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
        HOUSE_RENDERED[target] = render(directory)
    return HOUSE_RENDERED[target]


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    """Every Deployment, StatefulSet and Job."""
    return (o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job"))


def services_deployments(objects: list[Obj]) -> list[Obj]:
    """The long-running switchboard Deployments."""
    return [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] in LONG_RUNNING]


def pod_of(workload: Obj) -> Obj:
    """A workload's pod spec."""
    pod: Obj = workload["spec"]["template"]["spec"]
    return pod


def selects(selector: dict[str, str], workload: Obj) -> bool:
    """Whether matchLabels `selector` selects the workload's pods."""
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


@pytest.fixture(params=HOUSE_TARGETS)
def house(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Obj]]:
    """(target, rendered objects) for every overlay x component the house rules cover."""
    target: str = request.param
    return target, house_rendered(target, tmp_path_factory.getbasetemp())


# The renders of production overlays (a developer's cluster: one node, no zones, the image it just built), and of
# those among them on production's Kafka and Redis (not with local-infra's dev Kafka, Redis and mail sink).
PRODUCTION_TARGETS = [t for t in HOUSE_TARGETS if t.partition("+")[0] != "dev"]
PRODUCTION_INFRA_TARGETS = [t for t in PRODUCTION_TARGETS if not t.endswith("+local-infra")]


@pytest.fixture(params=PRODUCTION_TARGETS)
def production_house(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Obj]]:
    """(target, rendered objects) for every render of a production overlay."""
    target: str = request.param
    return target, house_rendered(target, tmp_path_factory.getbasetemp())


@pytest.fixture(params=PRODUCTION_INFRA_TARGETS)
def production_infra_house(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Obj]]:
    """(target, rendered objects) for every production render on production's own Kafka and Redis."""
    target: str = request.param
    return target, house_rendered(target, tmp_path_factory.getbasetemp())


def test_every_workload_runs_under_its_own_service_account_without_a_token(house: tuple[str, list[Obj]]) -> None:
    target, objects = house
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for workload in workloads(objects):
        name, pod = workload["metadata"]["name"], pod_of(workload)
        assert pod.get("automountServiceAccountToken") is False, f"{target} {name}"
        if workload["metadata"]["labels"].get("app.kubernetes.io/part-of") != "switchboard":
            continue  # local-infra's dev Kafka, Redis and mail sink
        assert pod.get("serviceAccountName") == name, f"{target} {name}: serviceAccountName"
        assert name in accounts, f"{target}: no ServiceAccount {name}"
        assert accounts[name].get("automountServiceAccountToken") is False, f"{target} ServiceAccount {name}"


def test_every_service_has_a_public_and_an_internal_port_and_probes_on_the_internal_one(
    house: tuple[str, list[Obj]],
) -> None:
    target, objects = house
    deployments = services_deployments(objects)
    assert {d["metadata"]["name"] for d in deployments} == set(LONG_RUNNING)
    for deployment in deployments:
        name, pod = deployment["metadata"]["name"], pod_of(deployment)
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == HTTP_PORT and ports["internal"] == INTERNAL_PORT, f"{target} {name}: {ports}"
        env = container_env(objects, target, pod, container)
        assert env.get("SB_HTTP_PORT") == str(HTTP_PORT) and env.get("SB_INTERNAL_PORT") == str(INTERNAL_PORT), name
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "internal"}, f"{target} {name} {probe}"
        startup = container["startupProbe"]
        # Liveness only counts once started: a start that takes a minute (a consumer group's join) is not a hang.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, f"{target} {name}"
        assert "initialDelaySeconds" not in container["livenessProbe"], f"{target} {name}: the startup probe waits"
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(INTERNAL_PORT), f"{target} {name}"


def pre_stop_sleep_s(container: Obj) -> int:
    """Seconds the container's preStop hook sleeps (`sleep N`)."""
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def test_every_service_stops_within_its_grace_period(house: tuple[str, list[Obj]]) -> None:
    from switchboard.gateway.settings import GatewaySettings

    target, objects = house
    for deployment in services_deployments(objects):
        name, pod = deployment["metadata"]["name"], pod_of(deployment)
        (container,) = pod["containers"]
        sleep_s = pre_stop_sleep_s(container)
        assert sleep_s >= 3, f"{target} {name}: endpoints need a few seconds to drop a terminating pod"
        env = container_env(objects, target, pod, container)
        fields = settings_class(name).model_fields
        grace_s = float(env.get("SB_SHUTDOWN_GRACE_S", fields["shutdown_grace_s"].default))
        drain_s = 0.0
        if settings_class(name) is GatewaySettings:
            drain_s = float(env.get("SB_DESK_DRAIN_S", fields["desk_drain_s"].default))
        # preStop, the drain, in-flight work, then a margin for closing clients: all before SIGKILL.
        budget = sleep_s + drain_s + grace_s + 5
        assert pod["terminationGracePeriodSeconds"] >= budget, f"{target} {name}: {budget}s needed"


def test_every_service_has_a_disruption_budget_that_lets_a_node_drain(house: tuple[str, list[Obj]]) -> None:
    target, objects = house
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for deployment in services_deployments(objects):
        name = deployment["metadata"]["name"]
        mine = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], deployment)]
        assert len(mine) == 1, f"{target} {name}: {len(mine)} PodDisruptionBudgets"
        # maxUnavailable, never minAvailable: a budget a one-replica Deployment cannot meet blocks every drain.
        assert mine[0]["spec"].get("maxUnavailable", 0) >= 1 and "minAvailable" not in mine[0]["spec"], name


def test_production_spreads_every_service_over_zones_and_nodes(production_house: tuple[str, list[Obj]]) -> None:
    target, objects = production_house
    for deployment in services_deployments(objects):
        name = deployment["metadata"]["name"]
        constraints = {c["topologyKey"]: c for c in pod_of(deployment).get("topologySpreadConstraints", [])}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= set(constraints), f"{target} {name}"
        for constraint in constraints.values():
            assert selects(constraint["labelSelector"]["matchLabels"], deployment), f"{target} {name}"
            assert constraint["maxSkew"] == 1
        assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule", name


def test_production_pins_every_image_by_digest(production_house: tuple[str, list[Obj]]) -> None:
    target, objects = production_house
    # switchboard's own images (local-infra's dev Kafka, Redis and mail sink keep their upstream tags).
    ours = [w for w in workloads(objects) if w["metadata"]["labels"].get("app.kubernetes.io/part-of") == "switchboard"]
    images = [c["image"] for w in ours for c in pod_of(w)["containers"]]
    assert len(images) >= len(LONG_RUNNING)
    for image in images:
        assert DIGEST.search(image), f"{target}: {image} is not pinned by digest"


def test_production_with_the_load_test_drives_production_infrastructure(
    production_infra_house: tuple[str, list[Obj]],
) -> None:
    target, objects = production_infra_house
    assert not {"kafka", "redis", "mailpit"} & (names(objects, "Deployment") | names(objects, "StatefulSet"))
    services_env: dict[str, str] = {}
    for pod, container in switchboard_containers(objects):
        env = container_env(objects, target, pod, container)
        for key, value in env.items():
            assert not any(dev in value for dev in DEV_INFRA), f"{target} {container['name']}: {key}={value}"
        if container_service(container) == "loadgen":
            continue
        for key in ("KAFKA_BOOTSTRAP", "REDIS_URL"):
            assert services_env.setdefault(key, env[key]) == env[key], f"{target} {container['name']}: {key}"
    if "loadtest" in target:
        loadgen = next(c for w in workloads(objects) for c in pod_of(w)["containers"] if c["name"] == "loadgen")
        pod = next(pod_of(w) for w in workloads(objects) if w["metadata"]["name"] == "loadgen")
        env = container_env(objects, target, pod, loadgen)
        assert {key: env[key] for key in services_env} == services_env


def public_routes(objects: list[Obj]) -> list[tuple[str, str, str | int, str]]:
    """(path, Service, port, kind) of every Ingress and HTTPRoute rule."""
    routes: list[tuple[str, str, str | int, str]] = []
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                port = service["port"].get("name", service["port"].get("number"))
                routes.append((path["path"], service["name"], port, "Ingress"))
    for route in (o for o in objects if o["kind"] == "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for match in rule["matches"]:
                for backend in rule["backendRefs"]:
                    routes.append((match["path"]["value"], backend["name"], backend["port"], "HTTPRoute"))
    return routes


def test_the_public_entrance_routes_desks_pages_and_streams_and_never_the_internal_port(
    house: tuple[str, list[Obj]],
) -> None:
    target, objects = house
    routes = public_routes(objects)
    kinds = {kind for *_, kind in routes}
    assert kinds == ({"HTTPRoute"} if "gateway-api" in target else {"Ingress"}), f"{target}: one entrance"
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for path, service, port, _ in routes:
        assert not path.startswith(INTERNAL_PATHS) and path != "/", f"{target}: {path} is public"
        ports = {p["name"]: p for p in services[service]["spec"]["ports"]}
        assert port in ("http", HTTP_PORT), f"{target}: {path} -> {service}:{port}"
        assert ports["http"]["port"] == HTTP_PORT and ports["http"]["targetPort"] == "http", service
    routed = {path: service for path, service, *_ in routes}
    for path, service in {**WEBSOCKET_PATHS, **PAGE_PATHS}.items():
        assert routed.get(path) == service, f"{target}: {path} is not routed to {service}"


def test_websocket_routes_outlive_an_idle_minute(house: tuple[str, list[Obj]]) -> None:
    target, objects = house
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
        if paths & set(WEBSOCKET_PATHS):
            annotations = ingress["metadata"]["annotations"]
            for key in ("proxy-read-timeout", "proxy-send-timeout"):
                assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600, f"{target}: {key}"
    for route in (o for o in objects if o["kind"] == "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            if {m["path"]["value"] for m in rule["matches"]} & set(WEBSOCKET_PATHS):
                # "0s" turns the request timeout off: a desk's socket is one request that lasts a shift.
                assert rule["timeouts"]["request"] == "0s", f"{target}: {rule['matches']}"
            else:
                assert rule["timeouts"]["request"] != "0s", f"{target}: {rule['matches']}"


def test_the_internal_port_is_open_only_to_named_callers(house: tuple[str, list[Obj]]) -> None:
    target, objects = house
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if INTERNAL_PORT in ports or not ports:
                assert rule.get("from"), f"{target} {policy['metadata']['name']}: the internal port for anyone"
    scrape = find(objects, "NetworkPolicy", "allow-prometheus-scrape")
    assert scrape is not None
    assert {p["port"] for rule in scrape["spec"]["ingress"] for p in rule["ports"]} == {INTERNAL_PORT}
    edge = find(objects, "NetworkPolicy", "allow-edge-ingress")
    assert edge is not None
    assert {p["port"] for rule in edge["spec"]["ingress"] for p in rule["ports"]} == {HTTP_PORT}


def test_the_gateway_and_the_load_generator_call_presence_on_its_internal_port(house: tuple[str, list[Obj]]) -> None:
    target, objects = house
    presence = find(objects, "Service", "presence")
    assert presence is not None
    assert {"name": "internal", "port": INTERNAL_PORT, "targetPort": "internal"} in presence["spec"]["ports"]
    urls = {}
    for pod, container in switchboard_containers(objects):
        env = container_env(objects, target, pod, container)
        for key in ("SB_PRESENCE_URL", "SB_LOADGEN_PRESENCE_URL"):
            if key in env:
                urls[container["name"]] = env[key]
    assert urls["gateway"] == f"http://presence:{INTERNAL_PORT}"
    if "loadtest" in target:
        assert urls["loadgen"] == f"http://presence:{INTERNAL_PORT}"
    egress = {
        p["port"]
        for policy in objects
        if policy["kind"] == "NetworkPolicy" and policy["spec"]["podSelector"].get("matchLabels") == {"app": "gateway"}
        for rule in policy["spec"].get("egress", [])
        if any(peer.get("podSelector", {}).get("matchLabels") == {"app": "presence"} for peer in rule.get("to", []))
        for p in rule["ports"]
    }
    assert egress == {INTERNAL_PORT}


def test_production_services_log_in_to_redis_as_their_own_user_over_tls(
    production_infra_house: tuple[str, list[Obj]],
) -> None:
    target, objects = production_infra_house
    for pod, container in switchboard_containers(objects):
        service = container_service(container)
        env = container_env(objects, target, pod, container)
        assert env["REDIS_URL"].startswith("rediss://"), f"{target} {service}"
        ca_file = Path(env["SB_REDIS_SSL_CA_FILE"])
        mount = next(m for m in container.get("volumeMounts", []) if m["mountPath"] == str(ca_file.parent))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "switchboard-redis", f"{target} {service}"
        assert {"key": "ca.crt", "path": ca_file.name} in volume["secret"]["items"], f"{target} {service}"
        if service == "topics":
            continue  # Kafka only
        refs = {
            var["name"]: var["valueFrom"]["secretKeyRef"]
            for var in container["env"]
            if "secretKeyRef" in var.get("valueFrom", {})
        }
        for setting, key in (("SB_REDIS_USERNAME", "username"), ("SB_REDIS_PASSWORD", "password")):
            assert refs[setting]["name"] == "switchboard-redis", f"{target} {service}"
            assert refs[setting]["key"] == f"{service}-{key}", f"{target} {service}"
