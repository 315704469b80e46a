"""The rule table: each rule's kebab-case name, what it asks, and how hard it is enforced.

MANDATORY blocks ``pulumi up``: a security control, or a stated requirement whose violation loses data.
ADVISORY warns: a judgement call that a stack may reasonably make differently (the reason is given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from . import artifact_registry, cloudsql, gcs, gke, helm, iam, labels, pubsub, redis

Check = Callable[[str, Mapping[str, Any]], list[str]]

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: EnforcementLevel
    check: Check


RULES: tuple[Rule, ...] = (
    # Cloud Storage (public principals in bucket IAM and ACLs: iam-no-public-principals)
    Rule("gcs-uniform-bucket-level-access", "Buckets use uniform bucket-level access (IAM only, no ACLs).",
         MANDATORY, gcs.uniform_bucket_level_access),
    Rule("gcs-public-access-prevention", "Buckets enforce public access prevention.",
         MANDATORY, gcs.public_access_prevention),
    # Advisory: a scratch or cache bucket may rightly skip versioning; the lake and model buckets should not.
    Rule("gcs-versioning", "Buckets keep object versions.",
         ADVISORY, gcs.versioning),
    # IAM
    Rule("iam-no-basic-roles", "No roles/owner, roles/editor or roles/viewer in any IAM member, binding or policy.",
         MANDATORY, iam.no_basic_roles),
    Rule("iam-no-public-principals", "No allUsers or allAuthenticatedUsers in IAM grants or storage ACLs.",
         MANDATORY, iam.no_public_principals),
    Rule("iam-no-service-account-keys", "No service account keys or HMAC keys; workloads use Workload Identity.",
         MANDATORY, iam.no_service_account_keys),
    # GKE clusters
    Rule("gke-private-nodes", "GKE nodes have private IPs only.",
         MANDATORY, gke.private_nodes),
    Rule("gke-workload-identity", "GKE clusters enable Workload Identity.",
         MANDATORY, gke.workload_identity),
    Rule("gke-shielded-nodes", "GKE clusters keep Shielded GKE nodes on.",
         MANDATORY, gke.shielded_nodes),
    Rule("gke-legacy-abac-disabled", "GKE clusters keep legacy ABAC off.",
         MANDATORY, gke.legacy_abac_disabled),
    Rule("gke-no-basic-auth-or-client-cert", "GKE clusters issue no static password and no client certificate.",
         MANDATORY, gke.no_basic_auth_or_client_cert),
    # Advisory: pinning versions by hand (no channel) is a legitimate, if costlier, way to control upgrades.
    Rule("gke-release-channel", "GKE clusters are enrolled in a release channel.",
         ADVISORY, gke.release_channel),
    Rule("gke-network-policy", "GKE clusters enforce NetworkPolicies (Dataplane V2 or network policy enforcement).",
         MANDATORY, gke.network_policy),
    # GKE node pools
    Rule("gke-node-auto-repair-upgrade", "Node pools keep auto-repair and auto-upgrade on.",
         MANDATORY, gke.node_auto_repair_upgrade),
    # Advisory: the taint is about cost and scheduling (CPU pods holding GPU nodes up), not security, and GKE
    # adds it itself to GPU nodes of a cluster that also has CPU pools.
    Rule("gke-gpu-pool-tainted", "GPU node pools carry the nvidia.com/gpu NoSchedule taint.",
         ADVISORY, gke.gpu_pool_tainted),
    Rule("gke-node-workload-metadata", "Node pools expose the GKE metadata server (GKE_METADATA) to pods.",
         MANDATORY, gke.workload_metadata),
    Rule("gke-node-dedicated-service-account", "Node pools run as a dedicated service account, not the default.",
         MANDATORY, gke.dedicated_service_account),
    Rule("gke-node-secure-boot", "Node pools boot with Secure Boot.",
         MANDATORY, gke.secure_boot),
    # Memorystore for Redis
    Rule("redis-auth-enabled", "Redis instances require AUTH.",
         MANDATORY, redis.auth_enabled),
    Rule("redis-transit-encryption", "Redis instances encrypt in transit (SERVER_AUTHENTICATION).",
         MANDATORY, redis.transit_encryption),
    Rule("redis-prod-standard-ha", "Redis instances labelled env=prod are STANDARD_HA.",
         MANDATORY, redis.prod_standard_ha),
    # Cloud SQL
    Rule("cloudsql-no-public-ip", "Cloud SQL instances have no public IPv4 address.",
         MANDATORY, cloudsql.no_public_ip),
    Rule("cloudsql-ssl-required", "Cloud SQL instances accept encrypted connections only.",
         MANDATORY, cloudsql.ssl_required),
    Rule("cloudsql-backups-enabled", "Cloud SQL instances take automated backups.",
         MANDATORY, cloudsql.backups_enabled),
    Rule("cloudsql-prod-deletion-protection", "Cloud SQL instances labelled env=prod keep deletion protection.",
         MANDATORY, cloudsql.prod_deletion_protection),
    Rule("cloudsql-prod-point-in-time-recovery", "Cloud SQL instances labelled env=prod enable point-in-time recovery.",
         MANDATORY, cloudsql.prod_point_in_time_recovery),
    # Pub/Sub
    # Advisory: whether a poison message is retried forever or parked is a delivery-semantics choice per consumer.
    Rule("pubsub-dead-letter-policy", "Pub/Sub subscriptions have a dead-letter topic.",
         ADVISORY, pubsub.dead_letter_policy),
    # Labels: mandatory because the prod-only rules above read env from them, so a missing label must not pass.
    Rule("gcp-required-labels", "Labelable GCP resources carry env, team and cost-center labels.",
         MANDATORY, labels.required_labels),
    # Supply chain
    Rule("helm-chart-version-pinned", "Helm releases and charts pin an exact chart version.",
         MANDATORY, helm.chart_version_pinned),
    Rule("artifact-registry-immutable-tags", "Docker repositories in Artifact Registry have immutable tags.",
         MANDATORY, artifact_registry.immutable_tags),
)


def _validator(check: Check) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    # args.props already has the shape the rules read (see props.py), so no conversion happens here.
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props):
            report_violation(message, None)

    return validate


def resource_policies() -> list[ResourceValidationPolicy]:
    """One ``ResourceValidationPolicy`` per rule, in table order."""
    return [
        ResourceValidationPolicy(name=rule.name, description=rule.description, validate=_validator(rule.check),
                                 enforcement_level=rule.level)
        for rule in RULES
    ]
