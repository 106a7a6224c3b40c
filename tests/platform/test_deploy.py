"""The deployment as users deploy it (deploy/), checked without Docker or Kubernetes: the manifests agree
with each other (labels and selectors, ports, Secret keys), with the settings (every variable is a real
setting; KEDA watches the groups and topics the workers use, and never asks for more workers than there are
partitions; the termination period covers the drain) and with the images (deploy/Dockerfile's targets bake
the model, run as the manifests' user, and start `pipeline`). Nothing here is applied or built; a cluster or
a Docker engine would catch the rest, and neither runs on the project's machines."""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipeline.config import Settings, env_name
from pipeline.kafka.clients import consumer_config
from pipeline.observability import http as health_http
from pipeline.observability.http import HealthServer
from pipeline.worker.supervisor import STOP_MARGIN_S

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
GPU = K8S / "gpu"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
RUNTIME_TARGETS = ("cpu", "cuda")
ROLES = {"input", "inference"}
# The Python each CUDA base image's Ubuntu release ships (the cuda target's venv is made with it).
UBUNTU_PYTHON = {"22.04": "3.10", "24.04": "3.12"}
# librdkafka's SASL mechanism -> KEDA's Kafka scaler's `sasl`.
KEDA_SASL = {
    "PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer", "GSSAPI": "gssapi",
}  # fmt: skip

Doc = dict[str, Any]


# --- loading ---------------------------------------------------------------------------------------------


@cache
def _files() -> dict[Path, list[Doc]]:
    """Every YAML file under deploy/k8s, with all of its documents."""
    found = {}
    for path in sorted(K8S.rglob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            found[path] = [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    return found


def _kustomization(folder: Path) -> Doc:
    (doc,) = _files()[folder / "kustomization.yaml"]
    return doc


def _base() -> list[Doc]:
    """What `kubectl apply -k deploy/k8s/base` applies: the documents of the files its kustomization lists."""
    return [doc for name in _kustomization(BASE)["resources"] for doc in _files()[(BASE / name).resolve()]]


def _gpu() -> list[Doc]:
    """The GPU overlay's result: the base with the overlay's strategic-merge patches applied by kind and name."""
    docs = list(_base())
    for patch in _kustomization(GPU)["patches"]:
        for change in _files()[(GPU / patch["path"]).resolve()]:
            i = next(i for i, d in enumerate(docs) if _ident(d) == _ident(change))
            docs[i] = _merge(docs[i], change)
    return docs


VARIANTS = {"base": _base, "gpu": _gpu}


def _ident(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for these manifests: maps merge, lists of named items
    (containers, env, volumes) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in patch.items()}}
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(item, dict) and "name" in item for item in [*base, *patch]):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = _merge(merged[item["name"]], item) if item["name"] in merged else item
        return list(merged.values())
    return patch


def _of(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    (doc,) = [d for d in docs if _ident(d) == (kind, name)]
    return doc


def _configmap(docs: list[Doc]) -> Doc:
    (cm,) = _of(docs, "ConfigMap")
    return cm


def _workers(docs: list[Doc]) -> dict[str, Doc]:
    """Role -> the StatefulSet whose container runs `pipeline worker --role ROLE`."""
    found = {}
    for sts in _of(docs, "StatefulSet"):
        args = _container(sts)["args"]
        assert args[0] == "worker" and "--role" in args, f"{sts['metadata']['name']}: {args}"
        found[args[args.index("--role") + 1]] = sts
    return found


def _pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]


def _container(workload: Doc) -> Doc:
    (container,) = _pod(workload)["spec"]["containers"]
    return container


def _pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment", "Job"):
            yield doc["metadata"]["name"], _pod(doc)


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


@cache
def _secret_keys() -> tuple[str, set[str]]:
    (secret,) = _files()[SECRET_EXAMPLE]
    assert secret["kind"] == "Secret"
    return secret["metadata"]["name"], set(secret.get("stringData", {})) | set(secret.get("data", {}))


def _settings(monkeypatch: pytest.MonkeyPatch, docs: list[Doc], container: Doc | None = None) -> Settings:
    """The Settings a container of these manifests gets: the ConfigMap's environment, then the container's
    own env (values from the Downward API or a Secret stand in as placeholders)."""
    import os

    for key in list(os.environ):
        if key.startswith("PIPELINE_") or key == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(key)
    for key, value in _configmap(docs)["data"].items():
        monkeypatch.setenv(key, value)
    for name, entry in (_env(container) if container else {}).items():
        monkeypatch.setenv(
            name, str(entry.get("value", "1" if "resourceFieldRef" in entry.get("valueFrom", {}) else "x"))
        )
    return Settings()


# --- the manifests hold together ---------------------------------------------------------------------------


def test_every_manifest_parses_and_names_what_it_is() -> None:
    assert _files(), "no manifests under deploy/k8s"
    for path, docs in _files().items():
        assert docs, f"{path}: no document"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: a document without apiVersion or kind"
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{path}: a {doc['kind']} without metadata.name"
    # The kustomization applies every manifest of the base (none forgotten), never a Secret with values in it.
    listed = {(BASE / name).resolve() for name in _kustomization(BASE)["resources"]}
    assert listed == {p for p in _files() if p.parent == BASE and p.name != "kustomization.yaml"}
    assert not _of(_base(), "Secret"), "secrets are created by hand (secret.example.yaml), never applied from here"
    assert _kustomization(GPU)["resources"] == ["../base"]
    names = [_ident(d) for d in _base()]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


@pytest.mark.parametrize("variant", VARIANTS)
def test_selectors_services_and_budgets_pick_the_same_pods(variant: str) -> None:
    docs = VARIANTS[variant]()
    workers = _workers(docs)
    assert set(workers) == ROLES
    for role, sts in workers.items():
        selector = sts["spec"]["selector"]["matchLabels"]
        labels = _pod(sts)["metadata"]["labels"]
        assert selector == labels, f"{role}: the selector is not the pod template's labels"
        service = _one(docs, "Service", sts["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None", f"{role}: the governing Service is not headless"
        assert service["spec"]["selector"] == selector, f"{role}: the Service selects other pods"
        (pdb,) = [p for p in _of(docs, "PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == selector]
        assert pdb["spec"].get("maxUnavailable") == 1
        for other_role, other in workers.items():
            if other is not sts:  # a selector that also matched the other role's pods would mix the two
                other_labels = _pod(other)["metadata"]["labels"]
                assert not selector.items() <= other_labels.items(), f"{role} selects {other_role} pods too"


def _probe_port(probe: Doc) -> Any:
    return probe["httpGet"]["port"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_metrics_port_is_one_number_everywhere(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = VARIANTS[variant]()
    port = _settings(monkeypatch, docs).metrics_port
    assert port > 0, "PIPELINE_METRICS_PORT 0 turns /metrics, /healthz and /readyz off"
    for role, sts in _workers(docs).items():
        container = _container(sts)
        (metrics,) = [p for p in container["ports"] if p.get("name") == "metrics"]
        assert metrics["containerPort"] == port, f"{role}: the metrics port is not PIPELINE_METRICS_PORT"
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert _probe_port(container[kind]) in ("metrics", port), f"{role}: {kind} asks another port"
        notes = _pod(sts)["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert int(notes["prometheus.io/port"]) == port, f"{role}: Prometheus would scrape another port"
        assert notes["prometheus.io/path"] == "/metrics"
        (service_port,) = _one(docs, "Service", sts["spec"]["serviceName"])["spec"]["ports"]
        assert service_port["name"] == "metrics" and service_port["targetPort"] in ("metrics", port)


def _served_paths() -> set[str]:
    """The paths pipeline/observability/http.py answers (its handler compares the path to literals)."""
    tree = ast.parse(Path(health_http.__file__).read_text(encoding="utf-8"))
    return {
        node.comparators[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "path"
        and isinstance(node.comparators[0], ast.Constant)
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ask_the_endpoints_that_answer_them(variant: str) -> None:
    """Liveness asks the path that fails only when the worker is wedged, readiness the one that fails while
    it is not ready: checked against the real HTTP server, with one failing and the other not."""
    state = {"alive": True, "ready": True}
    server = HealthServer(
        0,
        readiness=lambda: {"connected": state["ready"]},
        metrics=lambda: b"",
        liveness=lambda: {"inference": state["alive"]},
        host="127.0.0.1",
    ).start()

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert {"/metrics", "/healthz", "/readyz"} <= _served_paths()
        for role, sts in _workers(VARIANTS[variant]()).items():
            container = _container(sts)
            live = container["livenessProbe"]["httpGet"]["path"]
            ready = container["readinessProbe"]["httpGet"]["path"]
            start = container["startupProbe"]["httpGet"]["path"]
            assert (live, ready, start) == ("/healthz", "/readyz", "/healthz"), role
            state.update(alive=True, ready=False)  # not ready (a broker outage, say): no restart
            assert (status(live), status(ready)) == (200, 503), role
            state.update(alive=False, ready=True)  # wedged: the one case a restart helps
            assert (status(live), status(ready)) == (503, 200), role
    finally:
        server.stop()


def _known_env_names() -> set[str]:
    """Every PIPELINE_* variable a setting answers to, nested fields with `__`."""
    names = set()
    for name, info in Settings.model_fields.items():
        nested = info.annotation if isinstance(info.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            names |= {env_name((name, sub)) for sub in nested.model_fields}
        names.add(env_name((name,)).split(" or ")[-1])
    return names


def _dockerfile_env_names() -> set[str]:
    return {k for stage in _stages().values() for k in stage.env if k.startswith("PIPELINE_")}


def test_every_variable_is_a_real_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings ignore unknown variables, so a misspelt one would be silently without effect."""
    known = _known_env_names()
    for variant, load in VARIANTS.items():
        docs = load()
        used = set(_configmap(docs)["data"])
        for _name, pod in _pod_templates(docs):
            for container in pod["spec"]["containers"]:
                used |= {n for n in _env(container) if n.startswith("PIPELINE_")}
        assert used <= known, f"{variant}: not settings: {sorted(used - known)}"
        for _name, pod in _pod_templates(docs):  # and each container's values are valid ones
            for container in pod["spec"]["containers"]:
                _settings(monkeypatch, docs, container)
    assert _dockerfile_env_names() <= known, sorted(_dockerfile_env_names() - known)


@pytest.mark.parametrize("variant", VARIANTS)
def test_keda_scales_inference_on_its_own_groups_lag(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = VARIANTS[variant]()
    settings = _settings(monkeypatch, docs)
    inference = _workers(docs)["inference"]
    (scaled,) = _of(docs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("kind"), target["name"]) == ("StatefulSet", inference["metadata"]["name"])
    assert "replicas" not in inference["spec"], "KEDA's autoscaler owns the inference replicas; an apply resets them"
    low, high = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert 1 <= low <= high <= settings.partitions, "more inference workers than partitions would sit idle"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    topics = {t["metadata"]["topic"] for t in triggers}
    assert settings.topics.inference in topics
    assert topics <= {settings.topics.inference, settings.topics.inference_priority}
    auth_names = {a["metadata"]["name"] for a in _of(docs, "TriggerAuthentication")}
    reset = consumer_config(settings, "x")["auto.offset.reset"]
    for trigger in triggers:
        meta = trigger["metadata"]
        group = f"{settings.group}.inference" + (
            ".priority" if meta["topic"] == settings.topics.inference_priority else ""
        )
        assert meta["consumerGroup"] == group, "not the group that reads this topic"
        assert meta["bootstrapServers"] == settings.bootstrap_servers
        assert meta.get("allowIdleConsumers", "false") == "false"
        assert meta["offsetResetPolicy"] == reset, "KEDA would count lag from another offset than the readers"
        assert int(meta["lagThreshold"]) > 0
        security = settings.security
        tls = security.security_protocol in ("SSL", "SASL_SSL")
        assert meta.get("tls", "disable") == ("enable" if tls else "disable")
        sasl = security.security_protocol.startswith("SASL")
        expected = KEDA_SASL[(security.sasl_mechanism or "PLAIN").upper()] if sasl else "none"
        assert meta.get("sasl", "none") == expected
        if sasl or tls:
            assert trigger["authenticationRef"]["name"] in auth_names
    for role, sts in _workers(docs).items():  # a worker with no partition is never ready
        assert sts["spec"].get("replicas", 1) <= settings.partitions, role


def _secret_refs(docs: list[Doc]) -> list[tuple[str, str, str]]:
    """(where, Secret name, key) for every reference to a Secret key: env, volumes, KEDA."""
    refs = []
    for name, pod in _pod_templates(docs):
        for container in pod["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((f"{name} env {entry['name']}", ref["name"], ref["key"]))
            assert not any("secretRef" in src for src in container.get("envFrom", [])), "name the keys used"
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                items = volume["secret"].get("items")
                assert items, f"{name}: volume {volume['name']} mounts a whole Secret; name its keys"
                refs += [(f"{name} volume {volume['name']}", volume["secret"]["secretName"], i["key"]) for i in items]
    for auth in _of(docs, "TriggerAuthentication"):
        refs += [(f"KEDA {r['parameter']}", r["name"], r["key"]) for r in auth["spec"].get("secretTargetRef", [])]
    return refs


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_secret_reference_names_a_key_the_secret_holds(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = VARIANTS[variant]()
    secret, keys = _secret_keys()
    refs = _secret_refs(docs)
    assert refs
    for where, name, key in refs:
        assert (name, key) in {(secret, k) for k in keys}, f"{where}: Secret {name!r} key {key!r} is not in {keys}"
    assert {key for _w, _n, key in refs} == keys, "the example Secret holds a key nothing uses"
    cm = _configmap(docs)
    for auth in _of(docs, "TriggerAuthentication"):
        for ref in auth["spec"].get("configMapTargetRef", []):
            assert (ref["name"], ref["key"]) in {(cm["metadata"]["name"], k) for k in cm["data"]}
    settings = _settings(monkeypatch, docs)
    for name, pod in _pod_templates(docs):
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for container in pod["spec"]["containers"]:
            assert [src["configMapRef"]["name"] for src in container["envFrom"]] == [cm["metadata"]["name"]]
            if settings.security.sasl_mechanism:
                ref = _env(container)["PIPELINE_SECURITY__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret, name
            ca = settings.security.ssl_ca_location
            if ca:  # the CA file the settings name is a Secret key mounted at that very path
                mounted = {
                    f"{m['mountPath'].rstrip('/')}/{item['path']}"
                    for m in container["volumeMounts"]
                    if "secret" in volumes[m["name"]]
                    for item in volumes[m["name"]]["secret"]["items"]
                }
                assert ca in mounted, f"{name}: {ca} is not where the Secret's CA is mounted ({mounted})"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (create,) = re.findall(rf"kubectl create secret generic {secret}[^\n]*(?:\\\n[^\n]*)*", readme)
    for key in keys:
        assert f"={key}" in create or f"{key}=" in create, f"README's `kubectl create secret` lacks {key}"
    (example,) = _files()[SECRET_EXAMPLE]
    assert all("PLACEHOLDER" in value for value in example["stringData"].values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_have_time_to_drain_and_a_stable_id(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = VARIANTS[variant]()
    for role, sts in _workers(docs).items():
        container = _container(sts)
        drain = _settings(monkeypatch, docs, container).drain_timeout_s
        grace = _pod(sts)["spec"]["terminationGracePeriodSeconds"]
        assert grace > drain + STOP_MARGIN_S, f"{role}: {grace} s do not cover a {drain} s drain and Faust's stop"
        worker_id = _env(container)["PIPELINE_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert worker_id == "metadata.name", f"{role}: the worker id is not the pod's (stable) name"
        assert sts["spec"]["podManagementPolicy"] == "Parallel"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_as_the_images_user_and_write_only_tmp(variant: str) -> None:
    users = {_uid(target) for target in RUNTIME_TARGETS}
    (uid,) = users
    for name, pod in _pod_templates(VARIANTS[variant]()):
        security = pod["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == uid, name
        for container in pod["spec"]["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, name
            if own.get("readOnlyRootFilesystem"):  # Faust's data folder is under the temporary directory
                volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
                (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert "emptyDir" in volumes[tmp["name"]], name


def test_the_gpu_variant_asks_for_a_gpu_and_runs_the_cuda_image(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _documented_images()
    assert set(images) == set(RUNTIME_TARGETS)
    base, gpu = _workers(_base())["inference"], _workers(_gpu())["inference"]
    assert _container(base)["image"] == images["cpu"]
    container = _container(gpu)
    assert container["image"] == images["cuda"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert "nvidia.com/gpu" not in _container(base)["resources"].get("limits", {})
    assert _settings(monkeypatch, _gpu(), container).device == "cuda"
    for name, pod in _pod_templates(_gpu()):  # only the inference workers change
        if name != gpu["metadata"]["name"]:
            assert [c["image"] for c in pod["spec"]["containers"]] == [images["cpu"]], name
    if shutil.which("kubectl") is None:
        return
    rendered = subprocess.run(["kubectl", "kustomize", str(GPU)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    kustomized = _container(_workers(list(yaml.safe_load_all(rendered.stdout)))["inference"])
    same = {  # what kustomize made of the patch, as this test made it (a registry set there may rename the image)
        "tag": (kustomized["image"].rpartition(":")[2], container["image"].rpartition(":")[2]),
        "env": (_env(kustomized), _env(container)),
        "resources": (kustomized["resources"], container["resources"]),
    }
    for what, (theirs, ours) in same.items():
        assert theirs == ours, f"kustomize merges the GPU patch's {what} otherwise than this test does"


# --- the images --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def args(self, instruction: str) -> list[str]:
        return [rest for op, rest in self.instructions if op == instruction]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) with continuation lines joined and comments dropped, as Docker reads them."""
    found, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, rest = (pending + line).partition(" ")
        found.append((op.upper(), rest.strip()))
        pending = ""
    return found


@cache
def _stages() -> dict[str, Stage]:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for op, rest in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if op == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            image, _as, name = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            current = stages[name] = Stage(name, image)
        elif current is not None:
            current.instructions.append((op, rest))
            if op == "ENV":
                for item in shlex.split(rest):
                    key, _, value = item.partition("=")
                    current.env[key] = value
    stages["ARG"] = Stage("ARG", "", env=args)
    return stages


def _uid(target: str) -> int:
    user = _stages()[target].args("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"{target}: USER {user}: Kubernetes' runAsNonRoot can only check a numeric user"
    assert int(uid) != 0, f"{target} runs as root"
    return int(uid)


def _documented_images() -> dict[str, str]:
    """Target -> tag, from README.md's build commands (the tags the manifests must use)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    builds = re.findall(r"docker build -f deploy/Dockerfile --target (\S+)\s+-t (\S+) \.", readme)
    assert builds, "README.md documents no `docker build -f deploy/Dockerfile --target ...`"
    header = re.findall(r"docker build -f deploy/Dockerfile --target (\S+)\s+-t (\S+) \.", DOCKERFILE.read_text())
    assert sorted(builds) == sorted(header), "README.md and the Dockerfile's header build different images"
    return dict(builds)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_runtime_targets_bake_the_model_and_start_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = _stages()
    assert {"builder", "export", *RUNTIME_TARGETS} <= set(stages)
    version = _pyproject()["project"]["version"]
    images = _documented_images()
    assert images == {"cpu": f"kafka-inference-pipeline:{version}", "cuda": f"kafka-inference-pipeline:{version}-cuda"}
    # The export runs at build time, in its own stage, for the model the fleet serves.
    exports = [rest for rest in stages["export"].args("RUN") if "pipeline model export" in rest]
    exported = set(re.findall(r"pipeline model export --model (\S+)", " ".join(exports)))
    assert _settings(monkeypatch, _base()).model in exported
    baked_at = stages["export"].env["PIPELINE_MODEL_CACHE"]
    assert f"chmod -R a+rX {baked_at}" in " ".join(exports), "the runtime's user could not read every model file"
    port = _settings(monkeypatch, _base()).metrics_port
    for target in RUNTIME_TARGETS:
        stage = stages[target]
        assert not any("model export" in rest for rest in stage.args("RUN")), f"{target} exports at build twice"
        cache_copy = [r.split() for r in stage.args("COPY") if r.startswith("--from=export")]
        assert [c[1:] for c in cache_copy] == [[baked_at, stage.env["PIPELINE_MODEL_CACHE"]]], target
        for copy in stage.args("COPY"):  # a venv only moves between stages of the same base image
            if copy.startswith("--from=") and "/opt/venv" in copy:
                assert stages[copy.split()[0].removeprefix("--from=")].base == stage.base, target
        assert stage.args("ENTRYPOINT")[-1] == '["pipeline"]', target
        assert stage.args("CMD")[-1] == '["worker"]', target
        assert stage.args("EXPOSE") == [str(port)], target
        assert _uid(target) > 0
    assert stages["cpu"].env["PIPELINE_DEVICE"] == "cpu"
    for target in RUNTIME_TARGETS:  # else it tries to keep a device id under a read-only root, and warns
        assert stages[target].env.get("ORT_DISABLE_TELEMETRY") == "1", target
    assert stages["cuda"].env["PIPELINE_DEVICE"] == "cuda"


def test_the_images_pin_what_the_project_declares() -> None:
    stages, args = _stages(), _stages()["ARG"].env
    export_extra = _pyproject()["project"]["optional-dependencies"]["export"]
    (torch_pin,) = [d for d in export_extra if d.startswith("torch==")]
    assert args["TORCH_VERSION"] == torch_pin.removeprefix("torch=="), "the export stage's torch is not the extra's"
    ort = args["ONNXRUNTIME_VERSION"]
    (gpu_dep,) = [d for d in _pyproject()["project"]["dependencies"] if d.startswith("onnxruntime-gpu")]
    floor = re.search(r">=([\d.]+)", gpu_dep)
    assert floor is not None
    assert _version(ort) >= _version(floor.group(1)), "the images' ONNX Runtime is older than the package allows"
    assert 'onnxruntime==${ONNXRUNTIME_VERSION}"' in " ".join(stages["builder"].args("RUN"))
    assert 'onnxruntime-gpu==${ONNXRUNTIME_VERSION}"' in " ".join(stages["cuda"].args("RUN"))
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.[\d.]+-cudnn-runtime-ubuntu(\d+\.\d+)", stages["cuda"].base)
    assert cuda is not None, f"the cuda target is not on NVIDIA's CUDA runtime image: {stages['cuda'].base}"
    python = re.fullmatch(r"python:(\d+\.\d+)-slim.*", stages["cpu"].base)
    assert python is not None and UBUNTU_PYTHON[cuda.group(2)] == python.group(1), "the targets run other Pythons"
    assert _version(python.group(1)) >= _version(_pyproject()["project"]["requires-python"].removeprefix(">="))
    try:  # the suite's own onnxruntime-gpu, when it is the pinned release, says which CUDA it was built for
        from onnxruntime.capi import build_and_package_info as built
    except ImportError:
        return
    if getattr(built, "package_name", "") == "onnxruntime-gpu" and built.__version__ == ort:
        assert built.cuda_version.split(".")[0] == cuda.group(1), (
            f"onnxruntime-gpu {ort} needs CUDA {built.cuda_version}"
        )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` and `?` stay within a path segment, `**/` spans any folders."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern that matches the path or one of its
    parent folders decides (a `!` pattern keeps it), as Docker reads .dockerignore."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        regex = _glob(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not keep
    return verdict


def test_the_build_context_holds_what_the_images_copy_and_nothing_local() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        src
        for stage in _stages().values()
        for rest in stage.args("COPY")
        if not rest.startswith("--from=")
        for src in rest.split()[:-1]
    }
    assert copied
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        files = [p for p in (REPO / src).rglob("*") if p.is_file()] if (REPO / src).is_dir() else [REPO / src]
        kept = [p for p in files if "__pycache__" not in p.parts and p.suffix != ".pyc"]
        for file in kept:
            rel = file.relative_to(REPO).as_posix()
            assert not _ignored(rel, patterns), f"COPY {src}: .dockerignore leaves out {rel}"
    not_sent = [
        ".venv/bin/python",
        ".venv-export/bin/python",
        "infra/kafka/.local/server.properties",
        "infra/registry/.local/registry.log",
        "results/bench.json",
        ".git/HEAD",
        "pipeline/__pycache__/config.cpython-312.pyc",
        ".mypy_cache/3.11/x.json",
        "tests/conftest.py",
    ]
    for rel in not_sent:
        assert _ignored(rel, patterns), f".dockerignore sends {rel} to the build"
