"""The Pulumi program (infra/) under Pulumi's mocks, for the dev (staging) and prod stacks: it constructs, the
resources have the properties that matter (private, encrypted, least privilege, labelled), and the names it
creates are the names the other layers use (platform.yaml, the rendered workflows, gitops/). A config that
cannot work stops the program with a message naming the key before any resource is declared.

Most tests read the recorded resources of a whole run (``mocked_program.run``), so a failing assert is a plain
assert. The ``@pulumi.runtime.test`` ones return their Output (a test that does not would pass whatever its
asserts say), and ``test_a_wrong_expectation_fails`` shows that such a test does fail."""

from __future__ import annotations

import base64
import contextvars
import datetime as dt
import inspect
import json
import re
import runpy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import mocked_program
import pulumi
import pulumi_gcp
import pytest
import yaml
from mocked_program import Declared, Run
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from reco.lake import partition_dir
from reco.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
PLATFORM = yaml.safe_load((ROOT / "platform.yaml").read_text())
STACKS = ("dev", "prod")
ENVIRONMENT = {"dev": "staging", "prod": "prod"}
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
IAM_MEMBER_TYPES = {
    "gcp:projects/iAMMember:IAMMember",
    "gcp:serviceaccount/iAMMember:IAMMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:pubsub/topicIAMMember:TopicIAMMember",
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
    "gcp:secretmanager/secretIamMember:SecretIamMember",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
}
# Project-level grants exist only where GCP offers no narrower resource.
PROJECT_ROLES = {"roles/container.defaultNodeServiceAccount", "roles/container.clusterViewer"}


@cache
def result(stack: str) -> Run:
    return mocked_program.run(stack)


def project(stack: str) -> str:
    return mocked_program.stack_config(stack)["gcp:project"]


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def k8s_objects(run: Run, kind: str) -> dict[tuple[str, str], Declared]:
    """(namespace, name) -> the declared Kubernetes object of ``kind`` (namespace "" when cluster-scoped)."""
    found = {}
    for r in run.of_type(f"kubernetes:core/v1:{kind}"):
        meta = r.inputs["metadata"]
        found[(meta.get("namespace", ""), meta["name"])] = r
    return found


# -- the program constructs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_the_whole_program_constructs(stack: str) -> None:
    run = result(stack)
    assert run.error is None, run.error
    names = [(r.type_, r.name) for r in run.resources]
    assert len(names) == len(set(names)), "two resources of one type share a name"
    assert len(run.resources) > 50
    assert all(r.name.startswith("reco") or r.type_.startswith("pulumi:providers:") for r in run.resources)


def test_runs_do_not_leak_into_each_other() -> None:
    """dev after prod is dev: each run has its own Pulumi context (the policy pack runs both in one process)."""
    again = mocked_program.run("dev")
    assert again.error is None

    # Registration order follows the event loop; the set of resources and their inputs must not change.
    def key(r: Declared) -> tuple[str, str]:
        return r.type_, r.name

    assert sorted(again.resources, key=key) == sorted(result("dev").resources, key=key)
    assert again.outputs == result("dev").outputs


def _run_entry_point(stack: str) -> list[Declared]:
    resources = mocked_program.use_mocks(stack)
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "infra"), run_name="__main__")))
    return resources


def test_the_entry_point_pulumi_runs_declares_the_same_program() -> None:
    """infra/__main__.py as Pulumi runs it (the directory as a script, infra/ first on sys.path)."""
    resources = contextvars.Context().run(_run_entry_point, "prod")

    def key(r: Declared) -> tuple[str, str]:
        return r.type_, r.name

    assert sorted(resources, key=key) == sorted(result("prod").resources, key=key)


# -- node pools: the names the train step selects --------------------------------------------------------------


def train_gpu_template() -> dict[str, Any]:
    (template,) = yaml_docs(GITOPS / "workflows" / "reco-pipeline.yaml")
    (train,) = [t for t in template["spec"]["templates"] if t["name"] == "train-gpu"]
    return train


def node_pool(run: Run, pool: str) -> dict[str, Any]:
    return run.one("gcp:container/nodePool:NodePool", f"reco-{pool}").inputs


@pytest.mark.parametrize("stack", STACKS)
def test_gpu_pool_is_what_the_train_step_selects_and_tolerates(stack: str) -> None:
    gpu = PLATFORM["node_pools"]["gpu"]
    pool = node_pool(result(stack), "gpu")
    config = pool["nodeConfig"]
    assert pool["autoscaling"]["totalMinNodeCount"] == 0
    assert config["labels"] == gpu["labels"]
    ((accelerator),) = config["guestAccelerators"]
    assert accelerator["type"] == gpu["accelerator"] == "nvidia-l4"
    assert accelerator["count"] == 1
    assert accelerator["gpuDriverInstallationConfig"] == {"gpuDriverVersion": "LATEST"}
    taint = gpu["taint"]
    assert config["taints"] == [{"key": taint["key"], "value": taint["value"], "effect": "NO_SCHEDULE"}]
    assert taint == {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert config["spot"] is True

    # The rendered workflow: GKE labels a GPU node with its accelerator type; ours come from the pool's labels.
    train = train_gpu_template()
    assert train["nodeSelector"] == {**config["labels"], gpu["accelerator_label"]: accelerator["type"]}
    assert {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": taint["effect"]} in train[
        "tolerations"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_general_pool_is_what_every_other_step_selects(stack: str) -> None:
    pool = node_pool(result(stack), "general")
    assert pool["nodeConfig"]["labels"] == PLATFORM["node_pools"]["cpu"]["labels"]
    assert "taints" not in pool["nodeConfig"]
    selectors = [
        t["nodeSelector"]
        for doc in (yaml_docs(p)[0] for p in (GITOPS / "workflows").glob("reco-*.yaml"))
        for t in doc.get("spec", {}).get("templates", [])
        if "nodeSelector" in t and t["name"] != "train-gpu"
    ]
    assert selectors and all(s == pool["nodeConfig"]["labels"] for s in selectors)


@pytest.mark.parametrize("stack", STACKS)
def test_nodes_are_hardened_and_run_as_their_own_accounts(stack: str) -> None:
    run = result(stack)
    for pool in ("general", "gpu"):
        config = node_pool(run, pool)["nodeConfig"]
        assert config["serviceAccount"] == f"reco-nodes-{pool}@{project(stack)}.iam.gserviceaccount.com"
        assert config["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert config["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableIntegrityMonitoring": True}
        assert config["metadata"]["disable-legacy-endpoints"] == "true"
    grants = {
        (r.inputs["member"], r.inputs["role"])
        for r in run.resources
        if r.type_ in IAM_MEMBER_TYPES and "reco-nodes-gpu@" in r.inputs["member"]
    }
    assert {role for _, role in grants} == {
        "roles/container.defaultNodeServiceAccount",
        "roles/artifactregistry.reader",
    }


# -- the cluster -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_cluster_is_private_with_workload_identity_fuse_and_gateway(stack: str) -> None:
    cluster = result(stack).one("gcp:container/cluster:Cluster").inputs
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster["workloadIdentityConfig"] == {"workloadPool": f"{project(stack)}.svc.id.goog"}
    assert cluster["addonsConfig"]["gcsFuseCsiDriverConfig"] == {"enabled": True}
    assert cluster["gatewayApiConfig"] == {"channel": "CHANNEL_STANDARD"}
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"
    assert cluster["enableShieldedNodes"] is True
    assert cluster["enableLegacyAbac"] is False
    assert cluster["masterAuth"]["clientCertificateConfig"] == {"issueClientCertificate": False}
    assert "username" not in cluster["masterAuth"] and "password" not in cluster["masterAuth"]
    assert cluster["removeDefaultNodePool"] is True
    assert cluster["releaseChannel"] == {"channel": "REGULAR"}
    assert cluster["maintenancePolicy"]["recurringWindow"]["recurrence"].startswith("FREQ=WEEKLY")
    assert cluster["masterAuthorizedNetworksConfig"]["cidrBlocks"]
    assert cluster["nodeConfig"]["serviceAccount"].startswith("reco-nodes-general@")
    assert cluster["deletionProtection"] is (stack == "prod")


def test_proxy_only_subnet_is_the_range_the_network_policy_lets_in() -> None:
    """gitops/base/networkpolicy.yaml has the proxy-only range written in; reco-articles:proxyOnlyCidr defaults
    to it (an overlay patches the policy where a stack sets another)."""
    (policy, _) = yaml_docs(GITOPS / "base" / "networkpolicy.yaml")
    allowed = {block["ipBlock"]["cidr"] for block in policy["spec"]["ingress"][0]["from"] if "ipBlock" in block}
    for stack in STACKS:
        subnets = result(stack).of_type("gcp:compute/subnetwork:Subnetwork")
        (proxy,) = [s.inputs for s in subnets if s.inputs.get("purpose") == "REGIONAL_MANAGED_PROXY"]
        assert proxy["ipCidrRange"] == "10.129.0.0/23"
        assert proxy["ipCidrRange"] in allowed


# -- data stores -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_buckets_are_private_uniform_versioned(stack: str) -> None:
    buckets = {b.inputs["name"]: b.inputs for b in result(stack).of_type("gcp:storage/bucket:Bucket")}
    kinds = {"lake", "feast-registry"} | ({"mlflow"} if stack == "prod" else set())
    assert set(buckets) == {f"{project(stack)}-{kind}" for kind in kinds}
    for bucket in buckets.values():
        assert bucket["uniformBucketLevelAccess"] is True
        assert bucket["publicAccessPrevention"] == "enforced"
        assert bucket["versioning"] == {"enabled": True}


def test_lake_lifecycle_moves_and_deletes_only_bronze_events() -> None:
    bronze_events = Settings(workdir=Path("/w")).bronze_events_dir.relative_to("/w").as_posix() + "/"
    lake = result("prod").one("gcp:storage/bucket:Bucket", "reco-lake").inputs
    rules = {(r["action"]["type"], r["action"].get("storageClass")): r["condition"] for r in lake["lifecycleRules"]}
    nearline = rules[("SetStorageClass", "NEARLINE")]
    assert nearline["age"] == 30 and nearline["matchesPrefixes"] == [bronze_events] == ["lake/bronze/events/"]
    delete = rules[("Delete", None)]
    assert delete.get("matchesPrefixes") == [bronze_events] or delete.get("withState") == "ARCHIVED"
    deletes = [r["condition"] for r in lake["lifecycleRules"] if r["action"]["type"] == "Delete"]
    assert {"age": 365, "matchesPrefixes": [bronze_events]} in [
        {k: v for k, v in c.items() if k in ("age", "matchesPrefixes")} for c in deletes
    ]
    dev_lake = result("dev").one("gcp:storage/bucket:Bucket", "reco-lake").inputs
    assert any(r["condition"].get("age") == 90 for r in dev_lake["lifecycleRules"] if r["action"]["type"] == "Delete")


@pytest.mark.parametrize("stack", STACKS)
def test_events_subscription_writes_the_bronze_partition_of_the_arrival_day(stack: str) -> None:
    run = result(stack)
    subscription = run.one("gcp:pubsub/subscription:Subscription", "reco-events-to-lake").inputs
    storage = subscription["cloudStorageConfig"]
    assert storage["bucket"] == f"{project(stack)}-lake"
    # A file written on 2025-03-04 at 10:20:30 UTC, as Pub/Sub names it: <prefix><datetime><uuid><suffix>.
    when = dt.datetime(2025, 3, 4, 10, 20, 30)
    fmt = storage["filenameDatetimeFormat"]
    stamp = (
        fmt.replace("YYYY", f"{when:%Y}")
        .replace("MM", f"{when:%m}")
        .replace("DD", f"{when:%d}")
        .replace("hh", f"{when:%H}")
        .replace("mm", f"{when:%M}")
        .replace("ss", f"{when:%S}")
    )
    object_name = f"{storage['filenamePrefix']}{stamp}3f0c1e2a{storage['filenameSuffix']}"
    settings = Settings(workdir=Path("/mnt/reco"))
    expected_dir = partition_dir(settings.bronze_events_dir, when.date()).relative_to("/mnt/reco")
    assert Path(object_name).parent == expected_dir
    assert storage["textConfig"] == {}
    # Undeliverable messages go to the dead-letter topic, which has its own subscription.
    assert (
        subscription["deadLetterPolicy"]["deadLetterTopic"]
        == f"projects/{project(stack)}/topics/reco-events-dead-letter"
    )
    dead = run.one("gcp:pubsub/subscription:Subscription", "reco-events-dead-letter").inputs
    assert dead["topic"] == subscription["deadLetterPolicy"]["deadLetterTopic"]


@pytest.mark.parametrize("stack", STACKS)
def test_pubsub_agent_may_write_the_lake_and_dead_letter(stack: str) -> None:
    run = result(stack)
    agent = "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
    grants = {
        (
            r.type_.split(":")[-1],
            r.inputs["role"],
            r.inputs.get("bucket") or r.inputs.get("topic") or r.inputs.get("subscription"),
        )
        for r in run.resources
        if r.type_ in IAM_MEMBER_TYPES and r.inputs["member"] == agent
    }
    lake = f"{project(stack)}-lake"
    assert grants == {
        ("BucketIAMMember", "roles/storage.objectCreator", lake),
        ("BucketIAMMember", "roles/storage.legacyBucketReader", lake),
        ("TopicIAMMember", "roles/pubsub.publisher", "reco-events-dead-letter"),
        ("SubscriptionIAMMember", "roles/pubsub.subscriber", "reco-events-to-lake"),
    }


@pytest.mark.parametrize(("stack", "tier"), [("dev", "BASIC"), ("prod", "STANDARD_HA")])
def test_redis_requires_auth_and_tls_on_private_service_access(stack: str, tier: str) -> None:
    redis = result(stack).one("gcp:redis/instance:Instance").inputs
    assert redis["tier"] == tier
    assert redis["authEnabled"] is True
    assert redis["transitEncryptionMode"] == "SERVER_AUTHENTICATION"
    assert redis["connectMode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis["reservedIpRange"] == "reco-private-services"
    assert result(stack).outputs["redis_server_ca_certs"].startswith("-----BEGIN CERTIFICATE-----")


def test_cloud_sql_is_private_backed_up_and_protected_in_prod() -> None:
    run = result("prod")
    sql = run.one("gcp:sql/databaseInstance:DatabaseInstance").inputs
    settings = sql["settings"]
    assert settings["ipConfiguration"]["ipv4Enabled"] is False
    assert settings["ipConfiguration"]["privateNetwork"] == "projects/reco-articles-prod/global/networks/reco"
    assert "authorizedNetworks" not in settings["ipConfiguration"]
    assert settings["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
    assert settings["backupConfiguration"]["enabled"] is True
    assert settings["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert sql["deletionProtection"] is True and settings["deletionProtectionEnabled"] is True
    assert settings["availabilityType"] == "REGIONAL"
    assert "rootPassword" not in sql


def test_staging_has_no_mlflow_of_its_own_unless_told() -> None:
    """One MLflow (gitops/apps/mlflow.yaml: prod only); a dev stack told to host one gets a zonal, unprotected one."""
    assert not result("dev").of_type("gcp:sql/databaseInstance:DatabaseInstance")
    hosted = mocked_program.run("dev", {"reco-articles:hostMlflow": "true", "reco-articles:mlflowTrackingUri": None})
    assert hosted.error is None, hosted.error
    settings = hosted.one("gcp:sql/databaseInstance:DatabaseInstance").inputs["settings"]
    assert settings["ipConfiguration"]["ipv4Enabled"] is False
    assert settings["availabilityType"] == "ZONAL" and settings["deletionProtectionEnabled"] is False
    assert hosted.outputs["sql_connection_name"] == "reco-articles-staging:europe-west1:reco-mlflow"


def test_the_database_password_lives_in_secret_manager_and_travels_as_a_secret() -> None:
    run = result("prod")
    version = run.one("gcp:secretmanager/secretVersion:SecretVersion")
    assert version.inputs["secret"] == "projects/reco-articles-prod/secrets/mlflow-db-password"
    assert "secretData" in version.secrets
    user = run.one("gcp:sql/user:User")
    assert "password" in user.secrets and user.inputs["password"] == version.inputs["secretData"]
    db_secret = k8s_objects(run, "Secret")[("mlflow", "mlflow-db")]
    assert db_secret.inputs["stringData"] == {"username": "mlflow", "password": version.inputs["secretData"]}
    # Readable by MLflow's identity alone, on that one secret.
    (accessor,) = run.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert accessor.inputs["role"] == "roles/secretmanager.secretAccessor"
    assert accessor.inputs["member"] == "serviceAccount:mlflow@reco-articles-prod.iam.gserviceaccount.com"
    assert accessor.inputs["secretId"] == "mlflow-db-password"
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            assert "mock-random-password" not in json.dumps(value) and "mock-auth" not in json.dumps(value), name


def test_mlflow_chart_finds_infra_names() -> None:
    """gitops/apps/mlflow.yaml hard-codes the database host, the bucket, the Secret and the service account."""
    (app,) = yaml_docs(GITOPS / "apps" / "mlflow.yaml")
    values = app["spec"]["source"]["helm"]["valuesObject"]
    run = result("prod")
    record = run.one("gcp:dns/recordSet:RecordSet").inputs
    assert record["name"] == f"{values['backendStore']['postgres']['host']}."
    assert record["rrdatas"] == ["10.30.1.5"]
    assert values["artifactRoot"]["gcs"]["bucket"] == run.outputs["mlflow_bucket"]
    secret_ref = values["backendStore"]["existingDatabaseSecret"]
    db_secret = k8s_objects(run, "Secret")[(app["spec"]["destination"]["namespace"], secret_ref["name"])]
    assert set(db_secret.inputs["stringData"]) == {secret_ref["usernameKey"], secret_ref["passwordKey"]}
    annotation = values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert annotation == run.outputs["service_accounts"]["mlflow"]


@pytest.mark.parametrize("stack", STACKS)
def test_registry_keeps_tags_and_is_where_the_overlay_pulls_from(stack: str) -> None:
    run = result(stack)
    repo = run.one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["format"] == "DOCKER"
    assert repo["dockerConfig"] == {"immutableTags": True}
    actions = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert actions["keep-recent"]["action"] == "KEEP"
    assert actions["delete-untagged"]["condition"]["tagState"] == "UNTAGGED"
    (kustomization,) = yaml_docs(GITOPS / "overlays" / ENVIRONMENT[stack] / "kustomization.yaml")
    for image in kustomization["images"]:
        assert image["newName"] == f"{run.outputs['registry_url']}/{image['name']}"


# -- identity ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_no_primitive_role_and_project_roles_only_where_unavoidable(stack: str) -> None:
    grants = [r.inputs for r in result(stack).resources if r.type_ in IAM_MEMBER_TYPES]
    assert grants
    assert not [g for g in grants if g["role"] in PRIMITIVE_ROLES]
    project_roles = {r.inputs["role"] for r in result(stack).of_type("gcp:projects/iAMMember:IAMMember")}
    assert project_roles <= PROJECT_ROLES
    assert not [r for r in result(stack).resources if "IAMBinding" in r.type_ or "IAMPolicy" in r.type_]


@pytest.mark.parametrize("stack", STACKS)
def test_workloads_hold_the_narrowest_roles_on_single_resources(stack: str) -> None:
    run = result(stack)
    p = project(stack)

    def roles(account: str) -> set[tuple[str, str]]:
        member = f"serviceAccount:{account}@{p}.iam.gserviceaccount.com"
        return {
            (r.inputs["role"], r.inputs.get("bucket") or r.inputs.get("topic") or r.inputs.get("secretId") or "project")
            for r in run.resources
            if r.type_ in IAM_MEMBER_TYPES and r.inputs.get("member") == member
        }

    assert roles("reco-pipeline") == {
        ("roles/storage.objectAdmin", f"{p}-lake"),
        ("roles/storage.objectAdmin", f"{p}-feast-registry"),
    }
    assert roles("reco-api") == {
        ("roles/storage.objectViewer", f"{p}-lake"),
        ("roles/storage.objectViewer", f"{p}-feast-registry"),
        ("roles/pubsub.publisher", "reco-events"),
    }
    if stack == "prod":
        assert roles("mlflow") == {
            ("roles/storage.objectAdmin", f"{p}-mlflow"),
            ("roles/secretmanager.secretAccessor", "mlflow-db-password"),
        }
        assert roles("argocd") == set()
    else:
        # prod's Argo CD may find this cluster (and do what RBAC grants it inside).
        (viewer,) = [r for r in run.of_type("gcp:projects/iAMMember:IAMMember") if "argocd@" in r.inputs["member"]]
        assert viewer.inputs == {
            "project": p,
            "role": "roles/container.clusterViewer",
            "member": "serviceAccount:argocd@reco-articles-prod.iam.gserviceaccount.com",
        }


@pytest.mark.parametrize("stack", STACKS)
def test_workload_identity_binds_the_kubernetes_accounts_gitops_annotates(stack: str) -> None:
    run = result(stack)
    p = project(stack)
    bindings = {
        (r.inputs["serviceAccountId"].rsplit("/", 1)[-1], r.inputs["member"])
        for r in run.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/iam.workloadIdentityUser"
    }
    namespace = PLATFORM["namespace"]
    for ksa in PLATFORM["service_accounts"].values():
        assert (f"{ksa}@{p}.iam.gserviceaccount.com", f"serviceAccount:{p}.svc.id.goog[{namespace}/{ksa}]") in bindings
    # The Kubernetes service accounts of the gitops tree name these Google ones, in the overlay's project.
    annotated = [
        doc
        for path in (GITOPS / "base" / "serviceaccount.yaml", GITOPS / "workflows" / "serviceaccount.yaml")
        for doc in yaml_docs(path)
        if doc["kind"] == "ServiceAccount"
        and "iam.gke.io/gcp-service-account" in doc["metadata"].get("annotations", {})
    ]
    assert {doc["metadata"]["name"] for doc in annotated} == set(PLATFORM["service_accounts"].values())
    for doc in annotated:
        gsa = doc["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert gsa.split("@")[0] in run.outputs["service_accounts"]
    overlay = (GITOPS / "overlays" / ENVIRONMENT[stack] / "kustomization.yaml").read_text()
    assert f"reco-api@{p}.iam.gserviceaccount.com" in overlay
    assert run.outputs["service_accounts"]["reco-api"] == f"reco-api@{p}.iam.gserviceaccount.com"


# -- the cluster's contents: the Secrets and ConfigMaps gitops and the workflows read -----------------------------


def referenced_keys() -> set[tuple[str, str, str, str]]:
    """(kind, namespace, name, key) of every Secret/ConfigMap key gitops/ and the rendered workflows read."""
    refs = set()
    for path in GITOPS.rglob("*.yaml"):
        for doc in yaml_docs(path):
            namespace = doc.get("metadata", {}).get("namespace", PLATFORM["namespace"])
            for node in walk(doc):
                for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if field in node:
                        refs.add((kind, namespace, node[field]["name"], node[field]["key"]))
    # Argo Rollouts' notifications read $argo-token from their Secret (platform.yaml names it).
    notifications = PLATFORM["secrets"]["rollouts_notifications"]
    text = (GITOPS / "platform" / "argo-rollouts" / "notifications.yaml").read_text()
    assert f"${notifications['token_key']}" in text
    refs.add(("Secret", notifications["namespace"], notifications["name"], notifications["token_key"]))
    # kube-prometheus-stack: grafana.admin.existingSecret, with the grafana chart's default keys.
    (appset,) = yaml_docs(GITOPS / "apps" / "kube-prometheus-stack.yaml")
    spec = appset["spec"]["template"]["spec"]
    grafana = spec["source"]["helm"]["valuesObject"]["grafana"]["admin"]["existingSecret"]
    for key in ("admin-user", "admin-password"):
        refs.add(("Secret", spec["destination"]["namespace"], grafana, key))
    return refs


@pytest.mark.parametrize("stack", STACKS)
def test_every_secret_and_config_map_key_that_gitops_reads_exists(stack: str) -> None:
    run = result(stack)
    have = set()
    for kind, field in (("Secret", "stringData"), ("ConfigMap", "data")):
        for (namespace, name), obj in k8s_objects(run, kind).items():
            have |= {(kind, namespace, name, key) for key in obj.inputs.get(field, {})}
    refs = referenced_keys()
    assert ("Secret", "reco", "reco-redis", "url") in refs and ("Secret", "reco", "reco-gitops", "token") in refs
    assert refs <= have, sorted(refs - have)


@pytest.mark.parametrize("stack", STACKS)
def test_infra_secrets_are_pulumi_secrets_with_platform_keys(stack: str) -> None:
    run = result(stack)
    secrets = k8s_objects(run, "Secret")
    for secret in secrets.values():
        assert "stringData" in secret.secrets, secret.name
    s = PLATFORM["secrets"]
    redis = secrets[(PLATFORM["namespace"], s["redis"]["name"])].inputs["stringData"]
    assert re.fullmatch(r"rediss://:mock-auth%2F%2B%3D@10\.30\.0\.4:6378/0", redis[s["redis"]["url_key"]])
    assert redis[s["redis"]["ca_key"]] == mocked_program.CA_PEM + "\n"
    argo = secrets[(PLATFORM["namespace"], s["argo"]["name"])].inputs["stringData"]
    assert argo == {"url": "https://argo-workflows-server.argo.svc:2746", "token": "test-argo-server-token"}
    assert secrets[(PLATFORM["namespace"], s["alerts"]["name"])].inputs["stringData"] == {
        "webhook-url": "https://hooks.example.test/reco"
    }
    assert secrets[(PLATFORM["namespace"], s["gitops"]["name"])].inputs["stringData"] == {"token": "test-gitops-token"}
    notifications = s["rollouts_notifications"]
    assert secrets[(notifications["namespace"], notifications["name"])].inputs["stringData"] == {
        "argo-token": "test-rollouts-token"
    }


def test_config_secrets_default_to_empty_until_set() -> None:
    """The first `pulumi up` runs before the tokens exist (their service accounts come from Argo CD)."""
    bare = contextvars.Context().run(_run_without_secrets)
    assert bare.error is None, bare.error
    token = k8s_objects(bare, "Secret")[("reco", "reco-gitops")]
    assert token.inputs["stringData"] == {"token": ""} and "stringData" in token.secrets


def _run_without_secrets() -> Run:
    return mocked_program.run("dev", {key: None for key in mocked_program.TEST_SECRETS})


@pytest.mark.parametrize("stack", STACKS)
def test_pipeline_config_map(stack: str) -> None:
    run = result(stack)
    config = PLATFORM["config_maps"]["pipeline"]
    data = k8s_objects(run, "ConfigMap")[(PLATFORM["namespace"], config["name"])].inputs["data"]
    (root,) = yaml_docs(GITOPS / "apps" / "root.yaml")
    assert data[config["gitops_repo_key"]] == root["spec"]["source"]["repoURL"]
    # services/recommend/events.py accepts projects/<project>/topics/<topic> only.
    assert data[config["events_topic_key"]] == f"projects/{project(stack)}/topics/reco-events"
    assert data[config["argo_ui_key"]] == "https://argo-workflows-server.argo.svc:2746"
    expected_mlflow = (
        "http://mlflow.mlflow.svc.cluster.local:5000" if stack == "prod" else "http://mlflow.reco-articles.internal"
    )
    assert data[config["mlflow_key"]] == expected_mlflow


@pytest.mark.parametrize("stack", STACKS)
def test_workdir_is_the_lake_bucket_through_gcs_fuse(stack: str) -> None:
    run = result(stack)
    claim = PLATFORM["workdir"]["claim"]
    volume = k8s_objects(run, "PersistentVolume")[("", claim)].inputs["spec"]
    assert volume["csi"] == {"driver": "gcsfuse.csi.storage.gke.io", "volumeHandle": f"{project(stack)}-lake"}
    assert volume["accessModes"] == ["ReadWriteMany"]
    assert volume["claimRef"] == {"namespace": PLATFORM["namespace"], "name": claim}
    assert "implicit-dirs" in volume["mountOptions"]
    pvc = k8s_objects(run, "PersistentVolumeClaim")[(PLATFORM["namespace"], claim)].inputs["spec"]
    assert pvc["volumeName"] == claim and pvc["accessModes"] == ["ReadWriteMany"]
    assert pvc["storageClassName"] == volume["storageClassName"] == ""
    # The workflows and the API mount exactly this claim.
    claims = {
        node["persistentVolumeClaim"]["claimName"]
        for path in (*GITOPS.glob("workflows/*.yaml"), GITOPS / "base" / "rollout.yaml")
        for doc in yaml_docs(path)
        for node in walk(doc)
        if "persistentVolumeClaim" in node
    }
    assert claims == {claim}


# -- Argo CD: what Pulumi installs, and what it leaves to gitops/apps ---------------------------------------------


def gitops_charts() -> dict[str, str]:
    """chart -> pinned version, of every Application/ApplicationSet source in gitops/apps."""
    charts = {}
    for path in (GITOPS / "apps").glob("*.yaml"):
        for doc in yaml_docs(path):
            spec = doc.get("spec", {})
            spec = spec.get("template", {}).get("spec", spec)
            for source in [spec.get("source", {}), *spec.get("sources", [])]:
                if "chart" in source:
                    charts[source["chart"]] = source["targetRevision"]
    return charts


@pytest.mark.parametrize("stack", STACKS)
def test_helm_charts_are_pinned_and_none_is_also_gitops_own(stack: str) -> None:
    releases = [r.inputs for r in result(stack).of_type("kubernetes:helm.sh/v3:Release")]
    gitops = gitops_charts()
    assert {"argo-rollouts", "argo-workflows", "kube-prometheus-stack", "mlflow"} <= set(gitops)
    for release in releases:
        assert re.fullmatch(r"\d+\.\d+\.\d+", release["version"]), release["version"]
        assert release["repositoryOpts"]["repo"].startswith("https://")
        # One owner per chart: a chart both here and in gitops/apps would be two installs fighting.
        assert gitops.get(release["chart"], release["version"]) == release["version"]
        assert release["chart"] not in gitops
    assert [r["chart"] for r in releases] == (["argo-cd"] if stack == "prod" else [])


def test_argocd_gets_the_root_application_and_the_clusters_gitops_deploys_to() -> None:
    run = result("prod")
    (root_yaml,) = yaml_docs(GITOPS / "apps" / "root.yaml")
    root = run.one("kubernetes:argoproj.io/v1alpha1:Application").inputs
    assert {k: root[k] for k in ("apiVersion", "kind", "metadata", "spec")} == root_yaml
    clusters = {
        obj.inputs["stringData"]["name"]: obj
        for (namespace, _), obj in k8s_objects(run, "Secret").items()
        if namespace == "argocd" and obj.inputs["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    }
    destinations = {
        node["destination"]["name"].replace("{{.cluster}}", element["cluster"])
        for path in (GITOPS / "apps").glob("*.yaml")
        for doc in yaml_docs(path)
        for node in walk(doc)
        if "destination" in node
        for element in doc["spec"].get("generators", [{"list": {"elements": [{"cluster": ""}]}}])[0]["list"]["elements"]
    }
    assert destinations == set(clusters) == {"prod", "staging"}
    assert clusters["prod"].inputs["stringData"]["server"] == "https://kubernetes.default.svc"
    staging = clusters["staging"].inputs["stringData"]
    assert staging["server"] == f"https://{mocked_program.STAGING_OUTPUTS['cluster_endpoint']}"
    config = json.loads(staging["config"])
    assert config["execProviderConfig"]["command"] == "argocd-k8s-auth"
    assert config["tlsClientConfig"]["caData"] == mocked_program.STAGING_OUTPUTS["cluster_ca_certificate"]
    helm = run.one("kubernetes:helm.sh/v3:Release").inputs
    assert helm["values"]["controller"]["serviceAccount"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "argocd@reco-articles-prod.iam.gserviceaccount.com"
    }
    assert "argoproj.io_Application" in " ".join(helm["values"]["configs"]["cm"])
    # The staging stack lets that identity in.
    (binding,) = result("dev").of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    assert binding.inputs["subjects"] == [
        {
            "kind": "User",
            "name": "argocd@reco-articles-prod.iam.gserviceaccount.com",
            "apiGroup": "rbac.authorization.k8s.io",
        }
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_namespaces_cover_gitops_destinations_of_the_cluster(stack: str) -> None:
    env = ENVIRONMENT[stack]
    wanted = set()
    for path in (GITOPS / "apps").glob("*.yaml"):
        for doc in yaml_docs(path):
            if doc["kind"] not in ("Application", "ApplicationSet"):
                continue
            spec = doc["spec"].get("template", {}).get("spec", doc["spec"])
            clusters = [
                e["cluster"] for e in doc["spec"].get("generators", [{}])[0].get("list", {}).get("elements", [])
            ]
            names = clusters or [spec["destination"]["name"]]
            if env in names and spec["destination"]["namespace"] != "kube-system":
                wanted.add(spec["destination"]["namespace"])
    have = {ns for (_, ns) in k8s_objects(result(stack), "Namespace")}
    assert wanted <= have, wanted - have


# -- labels and outputs ------------------------------------------------------------------------------------------

LABEL_PATHS = {
    "gcp:container/cluster:Cluster": ("resourceLabels",),
    "gcp:container/nodePool:NodePool": ("nodeConfig", "resourceLabels"),
    "gcp:sql/databaseInstance:DatabaseInstance": ("settings", "userLabels"),
}


def labelable(type_: str) -> tuple[str, ...] | None:
    """Where a GCP resource type takes labels (None: it takes none), from pulumi_gcp's own signature."""
    if type_ in LABEL_PATHS:
        return LABEL_PATHS[type_]
    if not type_.startswith("gcp:"):
        return None
    module, cls = type_.split(":")[1].split("/")[0], type_.split(":")[2]
    resource = getattr(getattr(pulumi_gcp, module.lower() if hasattr(pulumi_gcp, module.lower()) else module), cls)
    return ("labels",) if "labels" in inspect.signature(resource._internal_init).parameters else None


@pytest.mark.parametrize("stack", STACKS)
def test_every_labelable_gcp_resource_is_labelled(stack: str) -> None:
    expected = {"env": ENVIRONMENT[stack], "team": "reco", "cost-center": "ml-platform"}
    checked = 0
    for r in result(stack).resources:
        path = labelable(r.type_)
        if path is None:
            continue
        value: Any = r.inputs
        for part in path:
            value = value.get(part, {})
        assert value == expected, (r.type_, r.name)
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("stack", STACKS)
def test_outputs(stack: str) -> None:
    run = result(stack)
    expected = {
        "environment",
        "cluster_name",
        "cluster_endpoint",
        "cluster_ca_certificate",
        "kubeconfig",
        "nat_ip",
        "registry_url",
        "redis_host",
        "redis_port",
        "redis_server_ca_certs",
        "events_topic",
        "service_accounts",
        "lake_bucket",
        "feast_registry_bucket",
    }
    if stack == "prod":
        expected |= {"mlflow_bucket", "sql_connection_name", "mlflow_db_password_secret"}
    assert set(run.outputs) == expected
    assert run.secret_outputs == {"kubeconfig"}
    kubeconfig = json.loads(run.outputs["kubeconfig"])
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{run.outputs['cluster_endpoint']}"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    assert run.outputs["registry_url"] == f"europe-west1-docker.pkg.dev/{project(stack)}/reco"
    assert run.outputs["cluster_name"] == "reco" and run.outputs["redis_host"] == "10.30.0.4"


# -- config that cannot work ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"reco-articles:gpuAccelerator": "nvidia-x"},
            "reco-articles:gpuAccelerator: unknown accelerator 'nvidia-x'; one of nvidia-l4, nvidia-tesla-t4,",
        ),
        (
            {"reco-articles:gpuAccelerator": "nvidia-tesla-t4"},
            "reco-articles:gpuAccelerator: 'nvidia-tesla-t4' is not platform.yaml's node_pools.gpu.accelerator",
        ),
        ({"reco-articles:gpuMinNodes": "-1"}, "reco-articles:gpuMinNodes: -1 is negative"),
        ({"reco-articles:systemMaxNodes": "-3"}, "reco-articles:systemMaxNodes: -3 is negative"),
        (
            {"reco-articles:gpuMinNodes": "3", "reco-articles:gpuMaxNodes": "2"},
            "reco-articles:gpuMinNodes: 3 is more than",
        ),
        ({"gcp:project": None}, "gcp:project: missing"),
        ({"reco-articles:redisTier": "PREMIUM"}, "reco-articles:redisTier: 'PREMIUM' is not one of BASIC, STANDARD_HA"),
        (
            {"reco-articles:podsCidr": "10.10.0.0/16"},
            "reco-articles:podsCidr: 10.10.0.0/16 overlaps reco-articles:subnetCidr",
        ),
        (
            {"reco-articles:gpuMachineType": "n1-standard-8"},
            "reco-articles:gpuMachineType: 'n1-standard-8' cannot carry nvidia-l4",
        ),
        (
            {"reco-articles:hostArgocd": "true", "reco-articles:argocdServiceAccount": None},
            "reco-articles:hostArgocd: Argo CD runs in the 'prod' cluster",
        ),
        ({"reco-articles:mlflowTrackingUri": None}, "reco-articles:mlflowTrackingUri: this stack does not run MLflow"),
        ({"reco-articles:gpuSpot": "sometimes"}, "reco-articles:gpuSpot: 'sometimes' is not true or false"),
    ],
)
def test_wrong_config_stops_before_any_resource(overrides: dict[str, str | None], message: str) -> None:
    from infra.config import InfraConfigError

    run = mocked_program.run("dev", overrides)
    assert isinstance(run.error, InfraConfigError), run.error
    assert str(run.error).startswith(message), str(run.error)
    assert run.resources == []


# -- component tests in Pulumi's own style, and proof that they can fail ------------------------------------------


def _network_component() -> Any:
    from infra.network import Network, NetworkArgs

    return Network(
        "t",
        NetworkArgs(
            region="europe-west1",
            subnet_cidr="10.10.0.0/20",
            pods_cidr="10.16.0.0/14",
            services_cidr="10.20.0.0/20",
            proxy_only_cidr="10.129.0.0/23",
            private_services_cidr="10.30.0.0/16",
            labels={"env": "staging"},
        ),
    )


def _check_proxy_only_range(expected: str) -> Any:
    @pulumi.runtime.test
    def check() -> pulumi.Output[None]:
        network = _network_component()

        def verify(values: list[Any]) -> None:
            cidr, purpose = values
            assert purpose == "REGIONAL_MANAGED_PROXY"
            assert cidr == expected, f"proxy-only range {cidr}, expected {expected}"

        return pulumi.Output.all(network.proxy_only_subnet.ip_cidr_range, network.proxy_only_subnet.purpose).apply(
            verify
        )

    return check


def test_network_component_reserves_the_gateway_proxy_range() -> None:
    context = contextvars.Context()
    context.run(mocked_program.use_mocks, "dev")
    context.run(_check_proxy_only_range("10.129.0.0/23"))


def test_a_wrong_expectation_fails() -> None:
    """The same test with a wrong expectation raises: the Output is returned, so its assert is awaited."""
    context = contextvars.Context()
    context.run(mocked_program.use_mocks, "dev")
    with pytest.raises(AssertionError, match=re.escape("expected 10.0.0.0/23")):
        context.run(_check_proxy_only_range("10.0.0.0/23"))


def test_redis_url_component_output_is_a_secret() -> None:
    @pulumi.runtime.test
    def check() -> pulumi.Output[None]:
        from infra.datastores import Datastores, DatastoresArgs
        from infra.network import Network

        network: Network = _network_component()
        args = DatastoresArgs(
            project="p",
            region="europe-west1",
            network=network.vpc.id,
            private_services_range=network.private_services_range.name,
            private_services=network.private_services,
            labels={},
            redis_tier="BASIC",
            redis_memory_gb=1,
            redis_version="REDIS_7_2",
            host_mlflow=False,
            sql_tier="db-custom-1-3840",
            sql_high_availability=False,
            sql_point_in_time_recovery=False,
            sql_backup_retention=7,
            deletion_protection=False,
            internal_domain="reco-articles.internal",
            lake_nearline_days=30,
            lake_delete_days=0,
            noncurrent_version_days=30,
            registry_name="reco",
            keep_image_versions=5,
            untagged_image_days=7,
            events_topic="reco-events",
        )
        data = Datastores("t", args)

        def verify(values: list[Any]) -> None:
            url, secret = values
            assert url.startswith("rediss://:") and url.endswith(":6378/0")
            assert secret is True

        is_secret = pulumi.Output.from_input(data.redis_url.is_secret())
        return pulumi.Output.all(data.redis_url, is_secret).apply(verify)

    context = contextvars.Context()
    context.run(mocked_program.use_mocks, "dev")
    context.run(check)
