"""The CrossGuard rules of policies/: each on a compliant, a violating and a missing-property resource,
and the pack as Pulumi runs it (a subprocess serving the analyzer over gRPC)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
if str(POLICIES_DIR) not in sys.path:
    sys.path.insert(0, str(POLICIES_DIR))

from reco_policies.catalog import RULES, Rule, resource_policies  # noqa: E402
from reco_policies.props import LABEL_PATHS  # noqa: E402

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}

LABELS = {"env": "dev", "team": "reco", "cost-center": "ml-platform"}
PROD_LABELS = {**LABELS, "env": "prod"}

BUCKET = "gcp:storage/bucket:Bucket"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
REDIS = "gcp:redis/instance:Instance"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
RELEASE = "kubernetes:helm.sh/v3:Release"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
BUCKET_BINDING = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
SA_KEY = "gcp:serviceaccount/key:Key"
SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"

GOOD: dict[str, dict[str, Any]] = {
    BUCKET: {
        "location": "EU",
        "uniformBucketLevelAccess": True,
        "publicAccessPrevention": "enforced",
        "versioning": {"enabled": True},
        "labels": LABELS,
    },
    CLUSTER: {
        "privateClusterConfig": {"enablePrivateNodes": True, "enablePrivateEndpoint": False},
        "workloadIdentityConfig": {"workloadPool": "reco-dev.svc.id.goog"},
        "enableShieldedNodes": True,
        "enableLegacyAbac": False,
        "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
        "releaseChannel": {"channel": "REGULAR"},
        "datapathProvider": "ADVANCED_DATAPATH",
        "removeDefaultNodePool": True,
        "initialNodeCount": 1,
        "resourceLabels": LABELS,
    },
    NODE_POOL: {
        "cluster": "reco-dev",
        "management": {"autoRepair": True, "autoUpgrade": True},
        "autoscaling": {"minNodeCount": 0, "maxNodeCount": 2},
        "nodeConfig": {
            "machineType": "g2-standard-8",
            "guestAccelerators": [{"type": "nvidia-l4", "count": 1}],
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
            "workloadMetadataConfig": {"mode": "GKE_METADATA"},
            "serviceAccount": "gke-nodes@reco-dev.iam.gserviceaccount.com",
            "shieldedInstanceConfig": {"enableSecureBoot": True, "enableIntegrityMonitoring": True},
        },
    },
    REDIS: {
        "tier": "BASIC",
        "memorySizeGb": 1,
        "authEnabled": True,
        "transitEncryptionMode": "SERVER_AUTHENTICATION",
        "labels": LABELS,
    },
    SQL: {
        "databaseVersion": "POSTGRES_16",
        "deletionProtection": False,
        "settings": {
            "tier": "db-custom-1-3840",
            "ipConfiguration": {"ipv4Enabled": False, "privateNetwork": "vpc", "sslMode": "ENCRYPTED_ONLY"},
            "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": False},
            "userLabels": LABELS,
        },
    },
    SUBSCRIPTION: {
        "topic": "projects/reco-dev/topics/events",
        "cloudStorageConfig": {"bucket": "reco-dev-lake"},
        "deadLetterPolicy": {"deadLetterTopic": "projects/reco-dev/topics/events-dead-letter", "maxDeliveryAttempts": 5},
        "labels": LABELS,
    },
    REPOSITORY: {
        "format": "DOCKER",
        "repositoryId": "reco",
        "dockerConfig": {"immutableTags": True},
        "labels": LABELS,
    },
    RELEASE: {"chart": "argo-cd", "version": "7.7.3", "repositoryOpts": {"repo": "https://argoproj.github.io/argo-helm"}},
    PROJECT_MEMBER: {"project": "reco-dev", "role": "roles/pubsub.publisher", "member": "serviceAccount:api@reco-dev.iam.gserviceaccount.com"},
    BUCKET_BINDING: {"bucket": "reco-dev-lake", "role": "roles/storage.objectViewer", "members": ["serviceAccount:api@x"]},
    SERVICE_ACCOUNT: {"accountId": "api"},
}


def resource(type_: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    """A copy of GOOD[type_] with dotted paths set (a value of ``...`` removes the property)."""
    props = copy.deepcopy(GOOD.get(type_, {}))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = props
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return type_, props


PROD_REDIS = {"labels": PROD_LABELS, "tier": "STANDARD_HA"}
PROD_SQL = {"settings__userLabels": PROD_LABELS, "deletionProtection": True,
            "settings__backupConfiguration__pointInTimeRecoveryEnabled": True}


@dataclass(frozen=True)
class Case:
    rule: str
    good: tuple[str, dict[str, Any]]
    bad: tuple[str, dict[str, Any]]
    missing: tuple[str, dict[str, Any]]
    missing_violates: bool


# Keyword paths use "__" for "." (settings__ipConfiguration__ipv4Enabled = settings.ipConfiguration.ipv4Enabled).
CASES = [
    Case("gcs-uniform-bucket-level-access", resource(BUCKET), resource(BUCKET, uniformBucketLevelAccess=False),
         resource(BUCKET, uniformBucketLevelAccess=...), True),
    Case("gcs-public-access-prevention", resource(BUCKET), resource(BUCKET, publicAccessPrevention="inherited"),
         resource(BUCKET, publicAccessPrevention=...), True),
    Case("gcs-versioning", resource(BUCKET), resource(BUCKET, versioning__enabled=False),
         resource(BUCKET, versioning=...), True),
    Case("iam-no-basic-roles", resource(PROJECT_MEMBER), resource(PROJECT_MEMBER, role="roles/editor"),
         resource(PROJECT_MEMBER, role=..., member=...), False),
    Case("iam-no-public-principals", resource(BUCKET_BINDING),
         resource(BUCKET_BINDING, members=["serviceAccount:api@x", "allUsers"]),
         resource(BUCKET_BINDING, members=...), False),
    Case("iam-no-service-account-keys", resource(SERVICE_ACCOUNT), (SA_KEY, {"serviceAccountId": "api"}),
         (SA_KEY, {}), True),
    Case("gke-private-nodes", resource(CLUSTER), resource(CLUSTER, privateClusterConfig__enablePrivateNodes=False),
         resource(CLUSTER, privateClusterConfig=...), True),
    Case("gke-workload-identity", resource(CLUSTER), resource(CLUSTER, workloadIdentityConfig__workloadPool=""),
         resource(CLUSTER, workloadIdentityConfig=...), True),
    Case("gke-shielded-nodes", resource(CLUSTER), resource(CLUSTER, enableShieldedNodes=False),
         resource(CLUSTER, enableShieldedNodes=...), False),
    Case("gke-legacy-abac-disabled", resource(CLUSTER), resource(CLUSTER, enableLegacyAbac=True),
         resource(CLUSTER, enableLegacyAbac=...), False),
    Case("gke-no-basic-auth-or-client-cert", resource(CLUSTER),
         resource(CLUSTER, masterAuth__clientCertificateConfig__issueClientCertificate=True),
         resource(CLUSTER, masterAuth=...), False),
    Case("gke-release-channel", resource(CLUSTER), resource(CLUSTER, releaseChannel__channel="UNSPECIFIED"),
         resource(CLUSTER, releaseChannel=...), True),
    Case("gke-network-policy", resource(CLUSTER), resource(CLUSTER, datapathProvider="LEGACY_DATAPATH"),
         resource(CLUSTER, datapathProvider=...), True),
    Case("gke-node-auto-repair-upgrade", resource(NODE_POOL), resource(NODE_POOL, management__autoUpgrade=False),
         resource(NODE_POOL, management=...), False),
    Case("gke-gpu-pool-tainted", resource(NODE_POOL),
         resource(NODE_POOL, nodeConfig__taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}]),
         resource(NODE_POOL, nodeConfig__taints=...), True),
    Case("gke-node-workload-metadata", resource(NODE_POOL),
         resource(NODE_POOL, nodeConfig__workloadMetadataConfig__mode="GCE_METADATA"),
         resource(NODE_POOL, nodeConfig__workloadMetadataConfig=...), True),
    Case("gke-node-dedicated-service-account", resource(NODE_POOL),
         resource(NODE_POOL, nodeConfig__serviceAccount="123456-compute@developer.gserviceaccount.com"),
         resource(NODE_POOL, nodeConfig__serviceAccount=...), True),
    Case("gke-node-secure-boot", resource(NODE_POOL),
         resource(NODE_POOL, nodeConfig__shieldedInstanceConfig__enableSecureBoot=False),
         resource(NODE_POOL, nodeConfig__shieldedInstanceConfig=...), True),
    Case("redis-auth-enabled", resource(REDIS), resource(REDIS, authEnabled=False),
         resource(REDIS, authEnabled=...), True),
    Case("redis-transit-encryption", resource(REDIS), resource(REDIS, transitEncryptionMode="DISABLED"),
         resource(REDIS, transitEncryptionMode=...), True),
    Case("redis-prod-standard-ha", resource(REDIS, **PROD_REDIS), resource(REDIS, **{**PROD_REDIS, "tier": "BASIC"}),
         resource(REDIS, **{**PROD_REDIS, "tier": ...}), True),
    Case("cloudsql-no-public-ip", resource(SQL), resource(SQL, settings__ipConfiguration__ipv4Enabled=True),
         resource(SQL, settings__ipConfiguration__ipv4Enabled=...), True),
    Case("cloudsql-ssl-required", resource(SQL),
         resource(SQL, settings__ipConfiguration__sslMode="ALLOW_UNENCRYPTED_AND_ENCRYPTED"),
         resource(SQL, settings__ipConfiguration__sslMode=...), True),
    Case("cloudsql-backups-enabled", resource(SQL), resource(SQL, settings__backupConfiguration__enabled=False),
         resource(SQL, settings__backupConfiguration=...), True),
    Case("cloudsql-prod-deletion-protection", resource(SQL, **PROD_SQL),
         resource(SQL, **{**PROD_SQL, "deletionProtection": False}),
         resource(SQL, **{**PROD_SQL, "deletionProtection": ...}), False),
    Case("cloudsql-prod-point-in-time-recovery", resource(SQL, **PROD_SQL),
         resource(SQL, **{**PROD_SQL, "settings__backupConfiguration__pointInTimeRecoveryEnabled": False}),
         resource(SQL, **{**PROD_SQL, "settings__backupConfiguration__pointInTimeRecoveryEnabled": ...}), True),
    Case("pubsub-dead-letter-policy", resource(SUBSCRIPTION), resource(SUBSCRIPTION, deadLetterPolicy__deadLetterTopic=""),
         resource(SUBSCRIPTION, deadLetterPolicy=...), True),
    Case("gcp-required-labels", resource(BUCKET), resource(BUCKET, labels={"env": "dev", "team": "reco", "cost-center": ""}),
         resource(BUCKET, labels=...), True),
    Case("helm-chart-version-pinned", resource(RELEASE), resource(RELEASE, version="^7.7.0"),
         resource(RELEASE, version=...), True),
    Case("artifact-registry-immutable-tags", resource(REPOSITORY), resource(REPOSITORY, dockerConfig__immutableTags=False),
         resource(REPOSITORY, dockerConfig=...), True),
]


def violations(rule: str, type_and_props: tuple[str, Mapping[str, Any]]) -> list[str]:
    type_, props = type_and_props
    return BY_NAME[rule].check(type_, props)


def test_every_rule_has_a_case() -> None:
    assert sorted(case.rule for case in CASES) == sorted(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_compliant(case: Case) -> None:
    assert violations(case.rule, case.good) == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_violating(case: Case) -> None:
    found = violations(case.rule, case.bad)
    assert found, f"{case.rule} accepted {case.bad}"
    assert all(isinstance(message, str) and message for message in found)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_missing_property(case: Case) -> None:
    assert bool(violations(case.rule, case.missing)) is case.missing_violates


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_other_types_are_not_checked(case: Case) -> None:
    """A rule ignores types it is not about (a Kubernetes ConfigMap stands for all of them)."""
    assert violations(case.rule, ("kubernetes:core/v1:ConfigMap", {"data": {"a": "b"}})) == []


# --- finer points of single rules --------------------------------------------------------------------


def test_rules_are_kebab_case_unique_and_levelled() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names)) >= 15
    for rule in RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", rule.name), rule.name
        assert rule.description.endswith(".")
        assert rule.level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)


def test_iam_policy_documents_are_read() -> None:
    policy = {"bindings": [{"role": "roles/storage.objectViewer", "members": ["allAuthenticatedUsers"]},
                           {"role": "roles/owner", "members": ["user:someone@example.com"]}]}
    props = {"bucket": "b", "policyData": json.dumps(policy)}
    assert len(BY_NAME["iam-no-public-principals"].check("gcp:storage/bucketIAMPolicy:BucketIAMPolicy", props)) == 1
    assert len(BY_NAME["iam-no-basic-roles"].check("gcp:projects/iAMPolicy:IAMPolicy", props)) == 1
    assert BY_NAME["iam-no-basic-roles"].check("gcp:projects/iAMPolicy:IAMPolicy", {"policyData": "{not json"})


def test_storage_acls_cannot_be_public() -> None:
    rule = BY_NAME["iam-no-public-principals"]
    assert rule.check("gcp:storage/bucketACL:BucketACL", {"roleEntities": ["READER:allUsers"]})
    assert rule.check("gcp:storage/objectAccessControl:ObjectAccessControl", {"entity": "allAuthenticatedUsers"})
    assert rule.check("gcp:storage/bucketACL:BucketACL", {"roleEntities": ["OWNER:project-owners-1"]}) == []


def test_iam_types_of_either_spelling_are_checked() -> None:
    """The provider spells some IAM types "Iam" (RepositoryIamMember, SecretIamMember): they are IAM all the same."""
    grant = {"repository": "reco", "role": "roles/owner", "member": "allUsers"}
    for type_ in ("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
                  "gcp:secretmanager/secretIamMember:SecretIamMember",
                  "gcp:pubsub/topicIAMMember:TopicIAMMember"):
        assert BY_NAME["iam-no-basic-roles"].check(type_, grant), type_
        assert BY_NAME["iam-no-public-principals"].check(type_, grant), type_


def test_a_dead_letter_topics_own_subscription_needs_no_dead_letter_policy() -> None:
    rule = BY_NAME["pubsub-dead-letter-policy"]
    for topic in ("projects/reco-prod/topics/reco-events-dead-letter", "projects/p/topics/orders-dlq"):
        assert rule.check(*resource(SUBSCRIPTION, topic=topic, deadLetterPolicy=...)) == [], topic
    assert rule.check(*resource(SUBSCRIPTION, topic="projects/p/topics/dead-letters-report", deadLetterPolicy=...))


def test_hmac_keys_are_keys() -> None:
    assert BY_NAME["iam-no-service-account-keys"].check("gcp:storage/hmacKey:HmacKey", {"serviceAccountEmail": "x"})


def test_prod_rules_do_not_apply_outside_prod() -> None:
    assert BY_NAME["redis-prod-standard-ha"].check(*resource(REDIS, tier="BASIC")) == []
    assert BY_NAME["cloudsql-prod-point-in-time-recovery"].check(*resource(SQL)) == []
    assert BY_NAME["cloudsql-prod-deletion-protection"].check(*resource(SQL, deletionProtection=False)) == []
    # No env label: not prod (the labels rule is what reports the missing label).
    assert BY_NAME["redis-prod-standard-ha"].check(*resource(REDIS, labels=..., tier="BASIC")) == []
    assert BY_NAME["gcp-required-labels"].check(*resource(REDIS, labels=...))


def test_cpu_pools_need_no_taint_and_gpu_machines_are_gpu_pools() -> None:
    rule = BY_NAME["gke-gpu-pool-tainted"]
    cpu = resource(NODE_POOL, nodeConfig__machineType="e2-standard-4", nodeConfig__guestAccelerators=..., nodeConfig__taints=...)
    assert rule.check(*cpu) == []
    a3_untainted = resource(NODE_POOL, nodeConfig__machineType="a3-highgpu-1g", nodeConfig__guestAccelerators=...,
                            nodeConfig__taints=...)
    assert rule.check(*a3_untainted)


def test_cluster_default_and_inline_pools_are_node_pools() -> None:
    kept_default_pool = resource(CLUSTER, removeDefaultNodePool=..., nodeConfig={"machineType": "e2-standard-4"})
    assert BY_NAME["gke-node-dedicated-service-account"].check(*kept_default_pool)
    assert BY_NAME["gke-node-secure-boot"].check(*kept_default_pool)
    inline = resource(CLUSTER, nodePools=[{"name": "system", "nodeConfig": GOOD[NODE_POOL]["nodeConfig"],
                                           "management": {"autoRepair": False}}])
    assert BY_NAME["gke-node-auto-repair-upgrade"].check(*inline) == ["nodePools[0].management.autoRepair is false: "
                                                                        "nodes must be repaired and patched by GKE"]
    assert BY_NAME["gke-node-secure-boot"].check(*resource(CLUSTER)) == []


def test_a_pool_cannot_opt_out_of_private_nodes() -> None:
    rule = BY_NAME["gke-private-nodes"]
    assert rule.check(*resource(NODE_POOL, networkConfig={"enablePrivateNodes": False}))
    assert rule.check(*resource(NODE_POOL)) == []


def test_helm_versions() -> None:
    rule = BY_NAME["helm-chart-version-pinned"]
    for version in ("7.7.3", "v1.2.3", "0.15.0-rc.1"):
        assert rule.check(*resource(RELEASE, version=version)) == [], version
    for version in ("", "latest", "7.x", "~7.7.0", ">=7.0.0", "7.7", "*"):
        assert rule.check(*resource(RELEASE, version=version)), version
    assert rule.check(RELEASE, {"chart": "./charts/reco"}) == []
    # Python's helm.v3.Chart registers no inputs, so its version cannot be seen: rejected.
    assert rule.check("kubernetes:helm.sh/v3:Chart", {})
    assert rule.check("kubernetes:helm.sh/v4:Chart", {"chart": "oci://registry/argo-cd", "version": "7.7.3"}) == []


def test_artifact_registry_other_formats_and_remote_repositories() -> None:
    rule = BY_NAME["artifact-registry-immutable-tags"]
    assert rule.check(*resource(REPOSITORY, format="PYTHON", dockerConfig=...)) == []
    assert rule.check(*resource(REPOSITORY, mode="REMOTE_REPOSITORY", dockerConfig=...)) == []


def test_every_labelled_type_is_a_gcp_type() -> None:
    assert all(type_.startswith("gcp:") for type_ in LABEL_PATHS)
    assert BY_NAME["gcp-required-labels"].check(*resource(SQL, settings__userLabels={"env": "dev"})) == [
        "settings.userLabels lacks team, cost-center"
    ]


def test_secrets_in_mock_wire_form_are_read() -> None:
    """Mocks keep a secret as {sig: secret-sig, value}; CrossGuard unwraps it. Rules read both."""
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": True}
    assert BY_NAME["redis-auth-enabled"].check(*resource(REDIS, authEnabled=secret)) == []


def test_crossguard_proxies_are_read_and_unknowns_propagate() -> None:
    """CrossGuard's props are Mapping/Sequence proxies that raise on unknown (preview) values."""
    from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UnknownValueError, unknown_checking_proxy

    _, pool = resource(NODE_POOL)
    for rule in RULES:
        assert rule.check(NODE_POOL, unknown_checking_proxy(copy.deepcopy(pool))) == [], rule.name
    _, bucket = resource(BUCKET, publicAccessPrevention=UNKNOWN_BOOLEAN_VALUE)
    with pytest.raises(UnknownValueError):
        BY_NAME["gcs-public-access-prevention"].check(BUCKET, unknown_checking_proxy(bucket))


# --- the pack as Pulumi runs it ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """policies/ started the way Pulumi starts a Python pack (runpy of the directory as __main__)."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", f"import runpy; runpy.run_path({str(POLICIES_DIR)!r}, run_name='__main__')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.strip().isdigit():
            process.kill()
            _, stderr = process.communicate(timeout=10)
            pytest.fail(f"the pack did not start: {line!r}\n{stderr}")
        with grpc.insecure_channel(f"127.0.0.1:{int(line)}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=10)


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, type_: str, props: dict[str, Any]) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=type_, properties=json_format.ParseDict(props, struct_pb2.Struct()),
        urn=f"urn:pulumi:dev::reco-articles::{type_}::r", name="r",
    )
    return list(stub.Analyze(request, timeout=30).diagnostics)


def test_pack_serves_every_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "reco-articles"
    served = {policy.name: policy.enforcementLevel for policy in info.policies}
    levels = {EnforcementLevel.MANDATORY: analyzer_pb2.MANDATORY, EnforcementLevel.ADVISORY: analyzer_pb2.ADVISORY}
    assert served == {rule.name: levels[rule.level] for rule in RULES}
    assert len(resource_policies()) == len(RULES)


def test_pack_reports_through_crossguard(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    assert analyze(analyzer, *resource(BUCKET)) == []
    diagnostics = analyze(analyzer, *resource(BUCKET, publicAccessPrevention=..., versioning=...))
    assert sorted((d.policyName, d.enforcementLevel) for d in diagnostics) == [
        ("gcs-public-access-prevention", analyzer_pb2.MANDATORY),
        ("gcs-versioning", analyzer_pb2.ADVISORY),
    ]


def test_pack_skips_unknown_values_in_preview(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    diagnostics = analyze(analyzer, *resource(BUCKET, publicAccessPrevention=UNKNOWN_STRING_VALUE))
    assert [(d.policyName, d.enforcementLevel) for d in diagnostics] == [
        ("gcs-public-access-prevention", analyzer_pb2.ADVISORY)
    ]
    assert "can't be known during preview" in diagnostics[0].message
