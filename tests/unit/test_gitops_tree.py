"""The GitOps tree (gitops/) checked without a cluster: each overlay, the apps and the platform additions render
with ``kubectl kustomize``; the core objects pass the Kubernetes schemas (kubernetes-validate, strict); the links
between objects hold (analysis templates and their args, Services and what they select, ConfigMaps, Secrets,
ServiceAccounts, HPA, HTTPRoute, notifications); a release.yaml's two values reach the Rollout, also after
``reco gitops promote``; the Applications point at paths that exist in one repository.

Each check is a function returning the problems it finds, and each is also run on a broken copy to show it can
fail."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import need_binary

from reco.gitops import Release, promote, read_release, write_release

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
ENVS = ("staging", "prod")
PLATFORM = yaml.safe_load((ROOT / "platform.yaml").read_text())
NAMESPACE = PLATFORM["namespace"]
# The Kubernetes minor the schemas are taken at: GKE's regular channel.
KUBERNETES_VERSION = "1.32"
# Custom resources: kubernetes-validate has no schema for them (their CRDs come with the charts), so they are
# checked by the structural tests below instead. The Rollout's pod template is still schema-checked, as the
# template of a Deployment.
CRD_KINDS = frozenset(
    {
        "Rollout",
        "AnalysisTemplate",
        "Application",
        "ApplicationSet",
        "AppProject",
        "Gateway",
        "HTTPRoute",
        "HealthCheckPolicy",
        "PodMonitor",
        "PrometheusRule",
    }
)
# Kinds that live in a namespace (everything the overlays render does; listed to catch a cluster-scoped one).
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"})

Objects = list[dict[str, Any]]


# -- rendering --------------------------------------------------------------------------------------------------


def render(path: Path) -> Objects:
    done = subprocess.run([need_binary("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@cache
def _rendered(path: str) -> str:
    return json.dumps(render(Path(path)))


def rendered(relative: str) -> Objects:
    """The committed tree's render of ``gitops/<relative>`` (cached; each caller gets its own copy)."""
    return list(json.loads(_rendered(str(GITOPS / relative))))


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(objects: Objects, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_templates(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Rollout and Deployment."""
    for obj in objects:
        if obj["kind"] in ("Rollout", "Deployment"):
            yield obj, obj["spec"]["template"]


def container(rollout: dict[str, Any], name: str = "api") -> dict[str, Any]:
    return next(c for c in rollout["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_value(cont: dict[str, Any], name: str) -> Any:
    return next(e.get("value") for e in cont.get("env", []) if e["name"] == name)


# -- the checks: each returns the problems it finds ---------------------------------------------------------------


def schema_problems(objects: Objects) -> list[str]:
    """Core objects against the Kubernetes schemas (strict: an unknown field is an error); the Rollout's pod
    template as a Deployment's."""
    problems = []
    for obj in objects:
        subjects = [obj]
        if obj["kind"] == "Rollout":
            spec = obj["spec"]
            subjects = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": obj["metadata"]["name"]},
                    "spec": {"selector": spec["selector"], "template": spec["template"]},
                }
            ]
        elif obj["kind"] in CRD_KINDS:
            continue
        for subject in subjects:
            what = f"{obj['kind']} {obj['metadata']['name']}"
            try:
                kubernetes_validate.validate(subject, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{what}: no schema for {subject['apiVersion']} (a CRD? then list it in CRD_KINDS)")
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.path)
                problems.append(f"{what}: {path}: {error.message}")
    return problems


def analysis_groups(rollout: dict[str, Any]) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    """(where, template names, args) of the background analysis and of every analysis step."""
    canary = rollout["spec"]["strategy"]["canary"]
    groups = []
    if "analysis" in canary:
        background = canary["analysis"]
        groups.append(("background", [t["templateName"] for t in background["templates"]], background.get("args", [])))
    for index, step in enumerate(canary.get("steps", [])):
        if "analysis" in step:
            analysis = step["analysis"]
            groups.append(
                (f"step {index}", [t["templateName"] for t in analysis["templates"]], analysis.get("args", []))
            )
    return groups


def analysis_problems(objects: Objects) -> list[str]:
    """Every template a Rollout names exists; every arg without a default is passed; nothing is passed that
    none of the group's templates declares; every passed arg has a value or a valueFrom."""
    templates = {t["metadata"]["name"]: t for t in of_kind(objects, "AnalysisTemplate")}
    problems = []
    for rollout in of_kind(objects, "Rollout"):
        for where, names, args in analysis_groups(rollout):
            passed = {a["name"] for a in args}
            declared: set[str] = set()
            for name in names:
                if name not in templates:
                    problems.append(f"{where}: no AnalysisTemplate {name}")
                    continue
                template_args = templates[name]["spec"].get("args", [])
                declared |= {a["name"] for a in template_args}
                for arg in template_args:
                    if "value" not in arg and "valueFrom" not in arg and arg["name"] not in passed:
                        problems.append(f"{where}: {name} needs arg {arg['name']}, not passed")
            for arg in args:
                if arg["name"] not in declared and all(n in templates for n in names):
                    problems.append(f"{where}: arg {arg['name']} is declared by none of {names}")
                if "value" not in arg and "valueFrom" not in arg:
                    problems.append(f"{where}: arg {arg['name']} has neither value nor valueFrom")
    return problems


def _external(kind: str) -> dict[str, set[str]]:
    """Name -> keys of what infra creates in the namespace (platform.yaml)."""
    section = {"Secret": "secrets", "ConfigMap": "config_maps"}[kind]
    return {
        entry["name"]: {v for k, v in entry.items() if k.endswith("_key")}
        for entry in PLATFORM[section].values()
        if entry.get("namespace", NAMESPACE) == NAMESPACE
    }


def reference_problems(objects: Objects) -> list[str]:
    """Every Service, ConfigMap, Secret and ServiceAccount a pod template, the Rollout, the HPA or the HTTPRoute
    names is rendered here or created by infra (platform.yaml), and a key of an infra object is one it has."""
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    wanted: list[tuple[str, str, str | None, str]] = []  # kind, name, key, where
    for workload, template in pod_templates(objects):
        where = f"{workload['kind']} {workload['metadata']['name']}"
        spec = template["spec"]
        wanted.append(("ServiceAccount", spec.get("serviceAccountName", "default"), None, where))
        for cont in spec.get("containers", []) + spec.get("initContainers", []):
            for env in cont.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    wanted.append(("Secret", source["secretKeyRef"]["name"], source["secretKeyRef"]["key"], where))
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    wanted.append(("ConfigMap", ref["name"], ref["key"], where))
            for env_from in cont.get("envFrom", []):
                if "secretRef" in env_from:
                    wanted.append(("Secret", env_from["secretRef"]["name"], None, where))
                if "configMapRef" in env_from:
                    wanted.append(("ConfigMap", env_from["configMapRef"]["name"], None, where))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                wanted.append(("Secret", volume["secret"]["secretName"], None, where))
            if "configMap" in volume:
                wanted.append(("ConfigMap", volume["configMap"]["name"], None, where))
    for rollout in of_kind(objects, "Rollout"):
        canary = rollout["spec"]["strategy"]["canary"]
        for field in ("stableService", "canaryService"):
            wanted.append(("Service", canary[field], None, f"Rollout {field}"))
    for route in of_kind(objects, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for backend in rule["backendRefs"]:
                wanted.append(("Service", backend["name"], None, f"HTTPRoute {route['metadata']['name']}"))
        for parent in route["spec"]["parentRefs"]:
            wanted.append(("Gateway", parent["name"], None, f"HTTPRoute {route['metadata']['name']}"))
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        wanted.append((hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"], None, "HPA"))
    for policy in of_kind(objects, "HealthCheckPolicy"):
        wanted.append(
            ("Service", policy["spec"]["targetRef"]["name"], None, f"HealthCheckPolicy {policy['metadata']['name']}")
        )

    problems = []
    for kind, name, key, where in wanted:
        if (kind, name) in present:
            continue
        external = _external(kind) if kind in ("Secret", "ConfigMap") else {}
        if name not in external:
            problems.append(f"{where}: {kind} {name} is neither rendered nor in platform.yaml")
        elif key is not None and key not in external[name]:
            problems.append(f"{where}: {kind} {name} has no key {key} in platform.yaml ({sorted(external[name])})")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selection_problems(objects: Objects) -> list[str]:
    """The Rollout's stable and canary Services (and the PDB, the PodMonitor) select its pods on a port they
    have; every Service selects some pods; the HPA scales the Rollout; the HTTPRoute's backends are exactly the
    two Services of the Rollout, on their port."""
    problems = []
    templates = list(pod_templates(objects))
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    for service in services.values():
        selector = service["spec"].get("selector", {})
        matching = [t for _, t in templates if _selects(selector, t["metadata"]["labels"])]
        if not matching:
            problems.append(f"Service {service['metadata']['name']} selects no pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            names = {p.get("name") for _, t in templates for c in t["spec"]["containers"] for p in c.get("ports", [])}
            numbers = {
                p["containerPort"] for _, t in templates for c in t["spec"]["containers"] for p in c.get("ports", [])
            }
            if target not in names | numbers:
                problems.append(f"Service {service['metadata']['name']}: targetPort {target} is no container port")
    for rollout in of_kind(objects, "Rollout"):
        name = rollout["metadata"]["name"]
        labels = rollout["spec"]["template"]["metadata"]["labels"]
        if not _selects(rollout["spec"]["selector"]["matchLabels"], labels):
            problems.append(f"Rollout {name}: its selector does not match its own pod template")
        canary = rollout["spec"]["strategy"]["canary"]
        pair = {canary["stableService"], canary["canaryService"]}
        for service_name in pair:
            service = services.get(service_name)
            if service is not None and not _selects(service["spec"].get("selector", {}), labels):
                problems.append(f"Rollout {name}: Service {service_name} does not select its pods")
        hpas = [h for h in of_kind(objects, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
        if not hpas:
            problems.append(f"Rollout {name}: no HorizontalPodAutoscaler scales it")
        for hpa in hpas:
            ref = hpa["spec"]["scaleTargetRef"]
            if (ref["apiVersion"], ref["kind"]) != ("argoproj.io/v1alpha1", "Rollout"):
                problems.append(
                    f"HPA {hpa['metadata']['name']} targets {ref['apiVersion']} {ref['kind']}, not the Rollout"
                )
        plugin = canary.get("trafficRouting", {}).get("plugins", {}).get("argoproj-labs/gatewayAPI", {})
        routes = [r for r in of_kind(objects, "HTTPRoute") if r["metadata"]["name"] == plugin.get("httpRoute")]
        if not routes:
            problems.append(
                f"Rollout {name}: the Gateway API plugin's HTTPRoute {plugin.get('httpRoute')} is not rendered"
            )
        for route in routes:
            for rule in route["spec"]["rules"]:
                backends = {b["name"] for b in rule["backendRefs"]}
                if backends != pair:
                    problems.append(
                        f"HTTPRoute {route['metadata']['name']}: backends {sorted(backends)} != {sorted(pair)}"
                    )
                for backend in rule["backendRefs"]:
                    service = services.get(backend["name"])
                    if service is not None and backend.get("port") not in {p["port"] for p in service["spec"]["ports"]}:
                        problems.append(
                            f"HTTPRoute backend {backend['name']}: port {backend.get('port')} not on the Service"
                        )
        for pdb in of_kind(objects, "PodDisruptionBudget"):
            if pdb["metadata"]["name"] == name and not _selects(pdb["spec"]["selector"]["matchLabels"], labels):
                problems.append(f"PodDisruptionBudget {name} does not select the Rollout's pods")
        for monitor in of_kind(objects, "PodMonitor"):
            if monitor["metadata"]["name"] == name:
                if not _selects(monitor["spec"]["selector"]["matchLabels"], labels):
                    problems.append(f"PodMonitor {name} does not select the Rollout's pods")
                ports = {
                    p["name"] for c in rollout["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
                }
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    if endpoint["port"] not in ports:
                        problems.append(f"PodMonitor {name}: port {endpoint['port']} is not the pods'")
    return problems


def namespace_problems(objects: Objects) -> list[str]:
    """Everything lands in platform.yaml's namespace, and the Rollout tells its plugin that namespace."""
    problems = []
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            problems.append(f"{obj['kind']} {obj['metadata']['name']} is cluster-scoped: not this tree's to create")
        elif obj["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{obj['kind']} {obj['metadata']['name']} in namespace {obj['metadata'].get('namespace')}")
    for rollout in of_kind(objects, "Rollout"):
        plugin = rollout["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
        if plugin.get("namespace") != NAMESPACE:
            problems.append(f"Rollout {rollout['metadata']['name']}: plugin namespace {plugin.get('namespace')}")
    return problems


def release_of(objects: Objects) -> dict[str, str]:
    """Where the release's values land: the images' tags, the env, the pod label and the Rollout annotation."""
    rollout = one(objects, "Rollout", "reco-api")
    judge = one(objects, "Deployment", "reco-judge")
    return {
        "image": container(rollout)["image"],
        "judge_image": container(judge, "judge")["image"],
        "env": env_value(container(rollout), "RECO_MODEL_VERSION"),
        "label": rollout["spec"]["template"]["metadata"]["labels"]["reco-articles/model-version"],
        "annotation": rollout["metadata"]["annotations"]["reco-articles/model-version"],
    }


def sources(app: dict[str, Any]) -> list[dict[str, Any]]:
    spec = app["spec"]["template"]["spec"] if app["kind"] == "ApplicationSet" else app["spec"]
    return [spec["source"]] if "source" in spec else list(spec["sources"])


def app_spec(app: dict[str, Any]) -> dict[str, Any]:
    return app["spec"]["template"]["spec"] if app["kind"] == "ApplicationSet" else app["spec"]


def app_problems(objects: Objects, root: Path = ROOT) -> list[str]:
    """Every git source is one repository and a path that exists and renders; every chart is pinned to an exact
    version; every Application's project exists and allows its repository and destination."""
    problems = []
    apps = [o for o in objects if o["kind"] in ("Application", "ApplicationSet")]
    projects = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "AppProject")}
    repos = set()
    for app in apps:
        name = app["metadata"]["name"]
        spec = app_spec(app)
        for source in sources(app):
            if "path" in source:
                repos.add(source["repoURL"])
                if not (root / source["path"]).is_dir():
                    problems.append(f"{name}: path {source['path']} does not exist")
                if source.get("targetRevision") != "main":
                    problems.append(f"{name}: git source on {source.get('targetRevision')}, not main")
            elif not re.fullmatch(r"\d+\.\d+\.\d+", str(source.get("targetRevision", ""))):
                problems.append(f"{name}: chart {source.get('chart')} not pinned ({source.get('targetRevision')})")
        project = spec["project"]
        if project == "default":
            continue  # the root only: the projects do not exist before it
        if project not in projects:
            problems.append(f"{name}: no AppProject {project}")
            continue
        for source in sources(app):
            if source["repoURL"] not in projects[project]["sourceRepos"]:
                problems.append(f"{name}: project {project} does not allow {source['repoURL']}")
        destination = spec["destination"]
        clusters = [destination["name"]]
        if app["kind"] == "ApplicationSet" and destination["name"] == "{{.cluster}}":
            clusters = [e["cluster"] for g in app["spec"]["generators"] for e in g["list"]["elements"]]
        for cluster in clusters:
            allowed = {(d["name"], d["namespace"]) for d in projects[project]["destinations"]}
            if (cluster, destination["namespace"]) not in allowed:
                problems.append(f"{name}: project {project} does not allow {cluster}/{destination['namespace']}")
    if len(repos) != 1:
        problems.append(f"git sources in {len(repos)} repositories: {sorted(repos)}")
    return problems


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=ENVS)
def env(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def overlay(env: str) -> Objects:
    return rendered(f"overlays/{env}")


@pytest.fixture
def apps() -> Objects:
    return rendered("apps")


def tree_copy(tmp_path: Path) -> Path:
    """A copy of gitops/ (and platform.yaml) to change and render."""
    root = tmp_path / "repo"
    shutil.copytree(GITOPS, root / "gitops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "platform.yaml", root / "platform.yaml")
    return root


# -- the committed tree passes every check -----------------------------------------------------------------------


def test_core_objects_pass_the_kubernetes_schemas(overlay: Objects) -> None:
    assert schema_problems(overlay) == []
    assert schema_problems(rendered("platform/argo-rollouts")) == []
    # Every custom kind rendered is one that is skipped on purpose, and every skipped kind is one rendered.
    rendered_kinds = {o["kind"] for o in overlay + rendered("apps")}
    assert {k for k in rendered_kinds if k in CRD_KINDS} == CRD_KINDS


def test_analysis_templates_and_args_match(overlay: Objects) -> None:
    assert analysis_problems(overlay) == []


def test_every_reference_resolves(overlay: Objects) -> None:
    assert reference_problems(overlay) == []


def test_services_hpa_route_pdb_and_monitor_select_the_rollout(overlay: Objects) -> None:
    assert selection_problems(overlay) == []


def test_everything_is_in_the_platform_namespace(overlay: Objects) -> None:
    assert namespace_problems(overlay) == []


def test_the_canary_steps_and_analyses_are_the_agreed_ones(overlay: Objects) -> None:
    rollout = one(overlay, "Rollout", "reco-api")
    canary = rollout["spec"]["strategy"]["canary"]
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == [5, 25, 50, 100]
    first_analysis = next(i for i, s in enumerate(canary["steps"]) if "analysis" in s)
    assert canary["steps"][:first_analysis] == [{"setWeight": 5}, canary["steps"][1]] and "pause" in canary["steps"][1]
    ctr = canary["steps"][first_analysis]["analysis"]
    assert [t["templateName"] for t in ctr["templates"]] == ["reco-ctr"]
    assert ctr["args"] == [
        {
            "name": "model-version",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['reco-articles/model-version']"}},
        }
    ]
    background = canary["analysis"]
    assert background["startingStep"] == 1
    assert sorted(t["templateName"] for t in background["templates"]) == ["reco-error-rate", "reco-latency-p99"]
    assert background["args"] == [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]
    # No replica count in git: the HPA owns it (Argo CD would otherwise reset it on every sync).
    assert "replicas" not in rollout["spec"]


def test_the_pods_are_hardened(overlay: Objects) -> None:
    for workload, template in pod_templates(overlay):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for cont in pod["containers"]:
            context = cont["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"requests", "limits"} <= set(cont["resources"]), workload["metadata"]["name"]
            assert "readinessProbe" in cont and "livenessProbe" in cont
    api = one(overlay, "Rollout", "reco-api")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in api["containers"][0]["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/data", PLATFORM["workdir"]["mount_path"]}
    # The lake, read by the service (silver article table), never written: events go to Pub/Sub.
    assert mounts[PLATFORM["workdir"]["mount_path"]].get("readOnly") is True
    env = {e["name"]: e for e in api["containers"][0]["env"]}
    assert env["RECO_WORKDIR"]["value"] == PLATFORM["workdir"]["mount_path"]
    assert env["RECO_EVENTS_SINK"]["value"] == "pubsub"
    claims = {v["name"]: v for v in api["volumes"] if "persistentVolumeClaim" in v}
    assert [c["persistentVolumeClaim"]["claimName"] for c in claims.values()] == [PLATFORM["workdir"]["claim"]]
    assert api["terminationGracePeriodSeconds"] >= 10 + 30  # preStop + uvicorn's graceful shutdown


def test_the_monitor_keeps_the_apps_endpoint_label_and_exposes_the_hash(overlay: Objects) -> None:
    endpoint = one(overlay, "PodMonitor", "reco-api")["spec"]["podMetricsEndpoints"][0]
    assert endpoint["honorLabels"] is True
    exposed = {(tuple(r["sourceLabels"]), r["targetLabel"]) for r in endpoint["relabelings"]}
    assert (("__meta_kubernetes_pod_label_rollouts_pod_template_hash",), "rollouts_pod_template_hash") in exposed
    assert {t for _, t in exposed} >= {"namespace", "pod"}


def test_an_abort_notifies_the_workflow_with_env_and_version(env: str, overlay: Objects) -> None:
    rollout = one(overlay, "Rollout", "reco-api")
    annotations = rollout["metadata"]["annotations"]
    assert annotations["notifications.argoproj.io/subscribe.on-rollout-aborted.reco-abort"] == ""
    assert annotations["reco-articles/environment"] == env

    config = one(rendered("platform/argo-rollouts"), "ConfigMap", "argo-rollouts-notification-configmap")
    assert config["metadata"]["namespace"] == PLATFORM["secrets"]["rollouts_notifications"]["namespace"]
    data = config["data"]
    service = yaml.safe_load(data["service.webhook.reco-abort"])
    assert service["url"] == "https://argo-workflows-server.argo.svc:2746"
    token = PLATFORM["secrets"]["rollouts_notifications"]["token_key"]
    assert {"name": "Authorization", "value": f"Bearer ${token}"} in service["headers"]
    assert yaml.safe_load(data["trigger.on-rollout-aborted"]) == [{"send": ["reco-rollout-aborted"]}]
    webhook = yaml.safe_load(data["template.reco-rollout-aborted"])["webhook"]["reco-abort"]
    assert webhook["method"] == "POST" and webhook["path"] == f"/api/v1/events/{NAMESPACE}/rollout-aborted"

    # The body, its template actions filled in the way the controller would for this Rollout, is the JSON
    # that WorkflowEventBinding reco-rollout-aborted reads.
    def fill(match: re.Match[str]) -> str:
        action = match.group(1).strip()
        index = re.fullmatch(r'index \.rollout\.metadata\.annotations "([^"]+)"', action)
        if index:
            return str(annotations[index.group(1)])
        field = re.fullmatch(r"\.rollout\.metadata\.(\w+)", action)
        assert field, f"unexpected template action {action}"
        return str(rollout["metadata"][field.group(1)])

    body = json.loads(re.sub(r"\{\{(.*?)\}\}", fill, webhook["body"]))
    assert body == {
        "rollout": "reco-api",
        "namespace": NAMESPACE,
        "modelVersion": annotations["reco-articles/model-version"],
        "env": env,
    }


# -- the release reaches the Rollout ---------------------------------------------------------------------------------


def test_the_committed_release_files_are_what_reco_gitops_parses(env: str, overlay: Objects) -> None:
    text = (GITOPS / "overlays" / env / "release.yaml").read_text()
    release = read_release(text)
    assert re.fullmatch(r"\d+", release.model_version) and release.image_tag
    # write_release touches only the two values: the rest of the file is byte for byte the same.
    changed = write_release(text, Release(image_tag="9.9.9", model_version="99"))
    assert read_release(changed) == Release("9.9.9", "99")
    assert write_release(changed, release) == text
    config = yaml.safe_load(text)
    assert config["metadata"] == {"name": "reco-release", "annotations": {"config.kubernetes.io/local-config": "true"}}
    assert set(config["data"]) == {"image_tag", "model_version"}
    # local-config: read by Kustomize, never deployed.
    assert not [o for o in overlay if o["metadata"]["name"] == "reco-release"]

    landed = release_of(overlay)
    registry = f"europe-west1-docker.pkg.dev/reco-articles-{env}/reco"
    assert landed == {
        "image": f"{registry}/reco-api:{release.image_tag}",
        "judge_image": f"{registry}/reco-pipeline:{release.image_tag}",
        "env": release.model_version,
        "label": release.model_version,
        "annotation": release.model_version,
    }


def test_a_changed_release_file_changes_the_rollout_and_nothing_else(
    env: str, tmp_path: Path, overlay: Objects
) -> None:
    root = tree_copy(tmp_path)
    path = root / "gitops" / "overlays" / env / "release.yaml"
    path.write_text(write_release(path.read_text(), Release(image_tag="7.8.9", model_version="42")))
    after = render(root / "gitops" / "overlays" / env)

    landed = release_of(after)
    assert landed["image"].endswith("/reco-api:7.8.9") and landed["judge_image"].endswith("/reco-pipeline:7.8.9")
    assert (landed["env"], landed["label"], landed["annotation"]) == ("42", "42", "42")
    # Only the Rollout and the judge differ from the committed render.
    before = {(o["kind"], o["metadata"]["name"]): o for o in overlay}
    changed = sorted(
        (o["kind"], o["metadata"]["name"]) for o in after if before.get((o["kind"], o["metadata"]["name"])) != o
    )
    assert changed == [("Deployment", "reco-judge"), ("Rollout", "reco-api")]


def test_the_overlays_images_entry_is_what_sets_the_registry(env: str, tmp_path: Path) -> None:
    """Kustomize rewrites the Rollout's image from `images:` (the configuration in base/kustomizeconfig is
    there for the rest): without the entry the registry is gone."""
    root = tree_copy(tmp_path)
    kustomization = root / "gitops" / "overlays" / env / "kustomization.yaml"
    config = yaml.safe_load(kustomization.read_text())
    config["images"] = [i for i in config["images"] if i["name"] != "reco-api"]
    kustomization.write_text(yaml.safe_dump(config))
    tag = read_release((kustomization.parent / "release.yaml").read_text()).image_tag
    assert release_of(render(kustomization.parent))["image"] == f"reco-api:{tag}"


def test_reco_gitops_promote_on_the_tree_is_a_new_canary(tmp_path: Path) -> None:
    """The promote that the pipeline's deploy step runs, on a git repository holding this tree: one commit of
    staging's release.yaml, and the re-rendered Rollout serves the promoted version."""
    root = tree_copy(tmp_path)
    git = ["git", "-C", str(root)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "config", "user.email", "ci@example.com"], check=True)
    subprocess.run([*git, "config", "user.name", "ci"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tree"], check=True)

    current = read_release((root / "gitops/overlays/staging/release.yaml").read_text())
    version = str(int(current.model_version) + 1)
    commit = promote(root, "staging", version, image_tag="0.2.0", reason="test")
    changed = subprocess.run(
        [*git, "show", "--name-only", "--format=", commit.sha], capture_output=True, text=True, check=True
    )
    assert changed.stdout.split() == ["gitops/overlays/staging/release.yaml"]
    landed = release_of(render(root / "gitops/overlays/staging"))
    assert landed["annotation"] == landed["env"] == version and landed["image"].endswith(":0.2.0")


# -- Argo CD ---------------------------------------------------------------------------------------------------------


def test_every_object_of_the_apps_passes_its_checks(apps: Objects) -> None:
    assert app_problems(apps) == []
    names = {o["metadata"]["name"] for o in apps}
    assert {"reco-root", "reco-api-staging", "reco-api-prod", "reco-workflows", "reco", "platform"} <= names
    root = one(apps, "Application", "reco-root")
    assert root["spec"]["source"]["path"] == "gitops/apps" and root["spec"]["destination"]["namespace"] == "argocd"
    assert all(o["metadata"]["namespace"] == "argocd" for o in apps)


def test_staging_syncs_itself_and_prod_only_from_main(apps: Objects) -> None:
    for name in ("reco-api-staging", "reco-api-prod"):
        app = one(apps, "Application", name)
        env = name.removeprefix("reco-api-")
        assert app["spec"]["source"]["path"] == f"gitops/overlays/{env}"
        assert app["spec"]["source"]["targetRevision"] == "main"
        assert app["spec"]["destination"] == {"name": env, "namespace": NAMESPACE}
        # The plugin owns the route's weights during a canary; Argo CD must neither flag nor undo them.
        assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
        assert app["spec"]["ignoreDifferences"][0]["kind"] == "HTTPRoute"
    staging = one(apps, "Application", "reco-api-staging")["spec"]["syncPolicy"]["automated"]
    assert staging["prune"] is True and staging["selfHeal"] is True
    workflows = one(apps, "Application", "reco-workflows")["spec"]["source"]
    assert workflows["path"] == "gitops/workflows"


def test_sync_waves_put_projects_and_platform_before_the_apps(apps: Objects) -> None:
    def wave(obj: dict[str, Any]) -> int:
        meta = obj["spec"]["template"]["metadata"] if obj["kind"] == "ApplicationSet" else obj["metadata"]
        return int(meta.get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    projects = max(wave(o) for o in of_kind(apps, "AppProject"))
    platform = [
        o for o in apps if o["kind"] in ("Application", "ApplicationSet") and app_spec(o)["project"] == "platform"
    ]
    reco = [o for o in apps if o["kind"] == "Application" and app_spec(o)["project"] == "reco"]
    assert platform and reco
    assert projects < min(wave(o) for o in platform)
    assert max(wave(o) for o in platform) < min(wave(o) for o in reco)
    api = [wave(o) for o in reco if o["metadata"]["name"].startswith("reco-api-")]
    assert min(api) > max(wave(o) for o in reco if not o["metadata"]["name"].startswith("reco-api-"))


def test_the_rollouts_controller_loads_the_gateway_api_plugin(apps: Objects) -> None:
    rollouts = one(apps, "ApplicationSet", "argo-rollouts")
    chart = next(s for s in sources(rollouts) if s.get("chart") == "argo-rollouts")
    plugins = chart["helm"]["valuesObject"]["controller"]["trafficRouterPlugins"]
    assert [p["name"] for p in plugins] == ["argoproj-labs/gatewayAPI"]
    assert re.search(r"/releases/download/v\d+\.\d+\.\d+/gatewayapi-plugin-linux-amd64$", plugins[0]["location"])
    prometheus = one(apps, "ApplicationSet", "kube-prometheus-stack")
    values = sources(prometheus)[0]["helm"]["valuesObject"]
    assert values["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert values["grafana"]["sidecar"]["dashboards"]["labelValue"] == "1"
    assert values["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValues"] is False
    # The Service name the analysis and the judge use comes from the release name.
    assert sources(prometheus)[0]["helm"]["releaseName"] == "kube-prometheus-stack"


# -- each check can fail ---------------------------------------------------------------------------------------------


def broken(objects: Objects, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> Objects:
    objects = copy.deepcopy(objects)
    change(one(objects, kind, name))
    return objects


def test_each_check_finds_what_it_is_for() -> None:
    objects = rendered("overlays/staging")
    api = "reco-api"

    def unknown_field(o: dict[str, Any]) -> None:
        o["spec"]["template"]["spec"]["containers"][0]["resource"] = {}

    assert any("resource" in p for p in schema_problems(broken(objects, "Rollout", api, unknown_field)))
    assert schema_problems(broken(objects, "Service", api, lambda o: o["spec"].update(typ="ClusterIP")))

    def rename_template(o: dict[str, Any]) -> None:
        o["spec"]["strategy"]["canary"]["steps"][2]["analysis"]["templates"][0]["templateName"] = "reco-ctr-v2"

    assert analysis_problems(broken(objects, "Rollout", api, rename_template)) == [
        "step 2: no AnalysisTemplate reco-ctr-v2"
    ]
    no_args = broken(objects, "Rollout", api, lambda o: o["spec"]["strategy"]["canary"]["analysis"].update(args=[]))
    assert "background: reco-latency-p99 needs arg canary-hash, not passed" in analysis_problems(no_args)

    def extra_arg(o: dict[str, Any]) -> None:
        o["spec"]["strategy"]["canary"]["steps"][2]["analysis"]["args"].append({"name": "modelversion", "value": "1"})

    assert analysis_problems(broken(objects, "Rollout", api, extra_arg)) == [
        "step 2: arg modelversion is declared by none of ['reco-ctr']"
    ]

    def other_secret(o: dict[str, Any]) -> None:
        next(e for e in container(o)["env"] if e["name"] == "RECO_REDIS_URL")["valueFrom"]["secretKeyRef"]["key"] = (
            "uri"
        )

    assert reference_problems(broken(objects, "Rollout", api, other_secret)) == [
        "Rollout reco-api: Secret reco-redis has no key uri in platform.yaml (['ca.crt', 'url'])"
    ]
    no_sa = [o for o in objects if (o["kind"], o["metadata"]["name"]) != ("ServiceAccount", "reco-judge")]
    assert reference_problems(no_sa) == [
        "Deployment reco-judge: ServiceAccount reco-judge is neither rendered nor in platform.yaml"
    ]

    wrong_selector = broken(
        objects,
        "Service",
        "reco-api-canary",
        lambda o: o["spec"]["selector"].update({"app.kubernetes.io/component": "web"}),
    )
    assert "Rollout reco-api: Service reco-api-canary does not select its pods" in selection_problems(wrong_selector)
    deployment_target = broken(
        objects,
        "HorizontalPodAutoscaler",
        api,
        lambda o: o["spec"]["scaleTargetRef"].update(apiVersion="apps/v1", kind="Deployment"),
    )
    assert any("targets apps/v1 Deployment" in p for p in selection_problems(deployment_target))

    def one_backend(o: dict[str, Any]) -> None:
        o["spec"]["rules"][0]["backendRefs"].pop()

    assert any("backends ['reco-api']" in p for p in selection_problems(broken(objects, "HTTPRoute", api, one_backend)))

    elsewhere = broken(objects, "Service", api, lambda o: o["metadata"].update(namespace="default"))
    assert namespace_problems(elsewhere) == ["Service reco-api in namespace default"]

    apps = rendered("apps")

    def no_such_path(o: dict[str, Any]) -> None:
        o["spec"]["source"]["path"] = "gitops/overlays/qa"

    assert app_problems(broken(apps, "Application", "reco-api-staging", no_such_path)) == [
        "reco-api-staging: path gitops/overlays/qa does not exist"
    ]

    def fork(o: dict[str, Any]) -> None:
        o["spec"]["source"]["repoURL"] = "https://github.com/someone/reco-articles.git"

    assert "git sources in 2 repositories" in " ".join(
        app_problems(broken(apps, "Application", "reco-workflows", fork))
    )

    def floating(o: dict[str, Any]) -> None:
        o["spec"]["source"]["targetRevision"] = "1.*"

    assert app_problems(broken(apps, "Application", "mlflow", floating)) == ["mlflow: chart mlflow not pinned (1.*)"]

    def to_default(o: dict[str, Any]) -> None:
        o["spec"]["destination"]["namespace"] = "default"

    assert app_problems(broken(apps, "Application", "reco-api-prod", to_default)) == [
        "reco-api-prod: project reco does not allow prod/default"
    ]
