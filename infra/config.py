"""The stack's settings: ``pulumi.Config`` read once into a typed, frozen ``InfraConfig``, validated before any
resource is declared. Every key has a default (below, with its meaning); ``gcp:project`` alone is required.

The names other layers reference (node-pool labels and taint, service accounts, Secrets, ConfigMaps, the
workdir claim) are not settings: they come from ``platform.yaml`` (``PLATFORM``), and a setting that would
contradict one of them is refused here.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_NAMESPACE = "reco-articles"  # Pulumi.yaml's name: the prefix of this program's config keys

# GPU type -> the machine family GKE attaches it to (a G2 VM comes with its L4s; A2/A3 likewise).
ACCELERATOR_MACHINE_FAMILIES: dict[str, str] = {
    "nvidia-l4": "g2",
    "nvidia-tesla-t4": "n1",
    "nvidia-tesla-a100": "a2",
    "nvidia-a100-80gb": "a2",
    "nvidia-h100-80gb": "a3",
}
# The GitOps tree's environments (gitops/overlays/<env>/, the Argo CD cluster names of gitops/apps/).
ENVIRONMENTS = ("staging", "prod")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE")
REDIS_TIERS = ("BASIC", "STANDARD_HA")
GPU_DRIVER_VERSIONS = ("DEFAULT", "LATEST")
# What the mlflow chart's Service answers on inside the cluster that hosts it (gitops/apps/mlflow.yaml).
IN_CLUSTER_MLFLOW = "http://mlflow.mlflow.svc.cluster.local:5000"
# Argo Server as the argo-workflows chart (gitops/apps/argo-workflows.yaml, server.secure) serves it.
IN_CLUSTER_ARGO_SERVER = "https://argo-workflows-server.argo.svc:2746"


class InfraConfigError(pulumi.RunError):
    """A setting that cannot work; the message starts with the full key (``reco-articles:gpuCount: …``)."""


@cache
def platform_names() -> dict[str, Any]:
    """``platform.yaml``: the names that link infra, workflows and gitops."""
    return dict(yaml.safe_load((ROOT / "platform.yaml").read_text()))


@cache
def root_application() -> dict[str, Any]:
    """``gitops/apps/root.yaml``: the one Argo CD Application infra applies (it then manages itself)."""
    return dict(yaml.safe_load((ROOT / "gitops" / "apps" / "root.yaml").read_text()))


@dataclass(frozen=True)
class InfraConfig:
    """One stack's settings. Sizes are node counts for the whole pool (all zones), memory in GB, days in days."""

    project: str  # gcp:project, the GCP project everything is created in (required)
    region: str  # gcp:region
    stack: str  # the Pulumi stack's name (dev, prod)
    environment: str  # which GitOps environment this cluster is: its overlay and its name in Argo CD
    team: str  # label `team` on every labelable resource
    cost_center: str  # label `cost-center`
    cluster_name: str  # the GKE cluster's name
    cluster_location: str  # a region (regional control plane, nodes in 3 zones) or a zone (zonal, cheaper)
    node_zones: tuple[str, ...]  # zones of the node pools; empty: GKE's choice in cluster_location
    gpu_zones: tuple[str, ...]  # zones of the GPU pool (where the accelerator exists); empty: node_zones
    release_channel: str  # GKE release channel: RAPID, REGULAR or STABLE
    maintenance_start: str  # RFC 3339; the window repeats per maintenance_recurrence
    maintenance_end: str  # RFC 3339; end of the first window
    maintenance_recurrence: str  # RFC 5545 RRULE
    master_authorized_networks: tuple[str, ...]  # CIDRs that may reach the control plane's public endpoint
    subnet_cidr: str  # nodes
    pods_cidr: str  # secondary range "pods"
    services_cidr: str  # secondary range "services"
    master_cidr: str  # the control plane's private /28
    proxy_only_cidr: str  # the regional internal Gateway's proxies (gitops/base/networkpolicy.yaml)
    private_services_cidr: str  # private service access: Memorystore and Cloud SQL addresses
    system_machine_type: str  # machine type of the general pool
    system_min_nodes: int  # general pool autoscaling floor
    system_max_nodes: int  # general pool autoscaling ceiling
    gpu_machine_type: str  # must be of the accelerator's family (g2 for L4)
    gpu_accelerator: str  # must equal platform.yaml node_pools.gpu.accelerator
    gpu_count: int  # GPUs per node
    gpu_min_nodes: int  # 0: no GPU node unless a train step waits for one
    gpu_max_nodes: int  # GPU pool autoscaling ceiling
    gpu_spot: bool  # Spot VMs (~60-70 % cheaper; the train step retries a preempted run)
    gpu_driver_version: str  # GKE-installed NVIDIA driver: DEFAULT or LATEST for the node version
    redis_tier: str  # BASIC (one node) or STANDARD_HA (replica, failover)
    redis_memory_gb: int  # Memorystore capacity
    redis_version: str  # Memorystore Redis version
    host_mlflow: bool  # this stack runs the one MLflow (Cloud SQL, artifact bucket, DNS name, its identity)
    sql_tier: str  # Cloud SQL machine tier
    sql_high_availability: bool  # REGIONAL instance with a standby in another zone
    sql_point_in_time_recovery: bool  # WAL kept for restores to any second of the last 7 days
    sql_backup_retention: int  # daily backups kept
    deletion_protection: bool  # cluster, Cloud SQL (both Pulumi's and GCP's flags)
    mlflow_tracking_uri: str  # what reco-pipeline-config hands the pipeline and the API
    internal_domain: str  # private DNS zone of the VPC (mlflow-db.<domain> for the MLflow chart)
    lake_nearline_days: int  # bronze events move to NEARLINE after this many days
    lake_delete_days: int  # and are deleted after this many (0: never)
    noncurrent_version_days: int  # an overwritten or deleted object's old version is kept this long
    registry_name: str  # Artifact Registry repository (the overlays' <region>-docker.pkg.dev/<project>/<name>)
    keep_image_versions: int  # the newest N versions of each image are never cleaned up
    untagged_image_days: int  # untagged images older than this are deleted
    events_topic: str  # Pub/Sub topic the API publishes events to (reco-pipeline-config's events-topic)
    gitops_repo: str  # repository Argo CD syncs and the pipeline pushes releases to
    host_argocd: bool  # this stack's cluster runs the one Argo CD (gitops/apps/root.yaml's destination)
    staging_stack: str  # (Argo CD's stack) the stack whose cluster Argo CD registers as "staging"
    argocd_service_account: str  # (the staging stack) Argo CD's Google service account, let into this cluster
    argo_server_url: str  # where the monitor step submits retraining runs (reco-argo-server's url)
    argo_ui_url: str  # links to a run in alerts (reco-pipeline-config's argo-ui-url)
    # Config secrets: empty until the tokens exist (they belong to service accounts Argo CD creates): run
    # `pulumi up` once without them, then set them and run it again (README, "Deploy to GCP").
    argo_server_token: pulumi.Output[str] = field(repr=False)  # reco-argo-server's token
    alert_webhook_url: pulumi.Output[str] = field(repr=False)  # reco-alerts' webhook-url (Slack-compatible)
    gitops_token: pulumi.Output[str] = field(repr=False)  # reco-gitops' token: may push the GitOps repository
    rollouts_notification_token: pulumi.Output[str] = field(repr=False)  # argo-rollouts-notification-secret

    @property
    def labels(self) -> dict[str, str]:
        """The GCP labels of every labelable resource."""
        return {"env": self.environment, "team": self.team, "cost-center": self.cost_center}

    @property
    def workload_pool(self) -> str:
        return f"{self.project}.svc.id.goog"

    @property
    def regional(self) -> bool:
        return self.cluster_location == self.region

    @property
    def gpu_pool(self) -> dict[str, Any]:
        return dict(platform_names()["node_pools"]["gpu"])

    @property
    def cpu_pool(self) -> dict[str, Any]:
        return dict(platform_names()["node_pools"]["cpu"])


SECRET_KEYS = ("argoServerToken", "alertWebhookUrl", "gitopsToken", "rolloutsNotificationToken")


def load() -> InfraConfig:
    """Read and validate the stack's config; raises ``InfraConfigError`` naming the key on the first problem."""
    gcp = pulumi.Config("gcp")
    conf = pulumi.Config(PROJECT_NAMESPACE)
    key = _Keys(conf)

    project = gcp.get("project") or ""
    if not project:
        raise InfraConfigError("gcp:project: missing; set it with `pulumi config set gcp:project <project-id>`")
    region = gcp.get("region") or "europe-west1"
    stack = pulumi.get_stack()
    environment = conf.get("environment") or ("prod" if stack == "prod" else "staging")
    key.one_of("environment", environment, ENVIRONMENTS)
    gpu = platform_names()["node_pools"]["gpu"]

    values: dict[str, Any] = dict(
        project=project,
        region=region,
        stack=stack,
        environment=environment,
        team=key.text("team", "reco"),
        cost_center=key.text("costCenter", "ml-platform"),
        cluster_name=key.text("clusterName", "reco"),
        cluster_location=key.text("clusterLocation", region),
        node_zones=key.strings("nodeZones"),
        gpu_zones=key.strings("gpuZones"),
        release_channel=key.text("releaseChannel", "REGULAR"),
        maintenance_start=key.text("maintenanceStart", "2025-01-04T01:00:00Z"),
        maintenance_end=key.text("maintenanceEnd", "2025-01-04T07:00:00Z"),
        maintenance_recurrence=key.text("maintenanceRecurrence", "FREQ=WEEKLY;BYDAY=SA,SU"),
        master_authorized_networks=key.strings("masterAuthorizedNetworks"),
        subnet_cidr=key.text("subnetCidr", "10.10.0.0/20"),
        pods_cidr=key.text("podsCidr", "10.16.0.0/14"),
        services_cidr=key.text("servicesCidr", "10.20.0.0/20"),
        master_cidr=key.text("masterCidr", "172.16.0.0/28"),
        proxy_only_cidr=key.text("proxyOnlyCidr", "10.129.0.0/23"),
        private_services_cidr=key.text("privateServicesCidr", "10.30.0.0/16"),
        system_machine_type=key.text("systemMachineType", "e2-standard-4"),
        system_min_nodes=key.count("systemMinNodes", 1),
        system_max_nodes=key.count("systemMaxNodes", 3),
        gpu_machine_type=key.text("gpuMachineType", "g2-standard-8"),
        gpu_accelerator=key.text("gpuAccelerator", str(gpu["accelerator"])),
        gpu_count=key.count("gpuCount", 1),
        gpu_min_nodes=key.count("gpuMinNodes", 0),
        gpu_max_nodes=key.count("gpuMaxNodes", 1),
        gpu_spot=key.flag("gpuSpot", True),
        gpu_driver_version=key.text("gpuDriverVersion", "LATEST"),
        redis_tier=key.text("redisTier", "BASIC"),
        redis_memory_gb=key.count("redisMemoryGb", 1),
        redis_version=key.text("redisVersion", "REDIS_7_2"),
        host_mlflow=key.flag("hostMlflow", environment == "prod"),
        sql_tier=key.text("sqlTier", "db-custom-1-3840"),
        sql_high_availability=key.flag("sqlHighAvailability", False),
        sql_point_in_time_recovery=key.flag("sqlPointInTimeRecovery", True),
        sql_backup_retention=key.count("sqlBackupRetention", 7),
        deletion_protection=key.flag("deletionProtection", True),
        mlflow_tracking_uri=key.text("mlflowTrackingUri", IN_CLUSTER_MLFLOW),
        internal_domain=key.text("internalDomain", "reco-articles.internal"),
        lake_nearline_days=key.count("lakeNearlineDays", 30),
        lake_delete_days=key.count("lakeDeleteDays", 365),
        noncurrent_version_days=key.count("noncurrentVersionDays", 30),
        registry_name=key.text("registryName", "reco"),
        keep_image_versions=key.count("keepImageVersions", 20),
        untagged_image_days=key.count("untaggedImageDays", 14),
        events_topic=key.text("eventsTopic", "reco-events"),
        gitops_repo=key.text("gitopsRepo", str(root_application()["spec"]["source"]["repoURL"])),
        host_argocd=key.flag("hostArgocd", environment == "prod"),
        staging_stack=key.text("stagingStack", ""),
        argocd_service_account=key.text("argocdServiceAccount", ""),
        argo_server_url=key.text("argoServerUrl", IN_CLUSTER_ARGO_SERVER),
        argo_ui_url=key.text("argoUiUrl", IN_CLUSTER_ARGO_SERVER),
        argo_server_token=key.secret("argoServerToken"),
        alert_webhook_url=key.secret("alertWebhookUrl"),
        gitops_token=key.secret("gitopsToken"),
        rollouts_notification_token=key.secret("rolloutsNotificationToken"),
    )
    _validate(values, gpu)
    return InfraConfig(**values)


def _validate(v: dict[str, Any], gpu: dict[str, Any]) -> None:
    k = _Keys.name
    _one_of("releaseChannel", v["release_channel"], RELEASE_CHANNELS)
    _one_of("redisTier", v["redis_tier"], REDIS_TIERS)
    _one_of("gpuDriverVersion", v["gpu_driver_version"], GPU_DRIVER_VERSIONS)

    accelerator = v["gpu_accelerator"]
    if accelerator not in ACCELERATOR_MACHINE_FAMILIES:
        raise InfraConfigError(
            f"{k('gpuAccelerator')}: unknown accelerator {accelerator!r}; one of {', '.join(ACCELERATOR_MACHINE_FAMILIES)}"
        )
    if accelerator != gpu["accelerator"]:
        raise InfraConfigError(
            f"{k('gpuAccelerator')}: {accelerator!r} is not platform.yaml's node_pools.gpu.accelerator "
            f"{gpu['accelerator']!r}, which the train step's nodeSelector asks for: change platform.yaml and "
            "re-render the workflows (reco workflows render) instead"
        )
    family = ACCELERATOR_MACHINE_FAMILIES[accelerator]
    if not v["gpu_machine_type"].startswith(f"{family}-"):
        raise InfraConfigError(
            f"{k('gpuMachineType')}: {v['gpu_machine_type']!r} cannot carry {accelerator}; use a {family}-* machine type"
        )
    for low, high in (("systemMinNodes", "systemMaxNodes"), ("gpuMinNodes", "gpuMaxNodes")):
        lo, hi = v[_snake(low)], v[_snake(high)]
        if lo > hi:
            raise InfraConfigError(f"{k(low)}: {lo} is more than {k(high)} ({hi})")
    if v["system_max_nodes"] < 1:
        raise InfraConfigError(f"{k('systemMaxNodes')}: the system pool needs at least one node")
    if v["gpu_count"] < 1:
        raise InfraConfigError(f"{k('gpuCount')}: a GPU node needs at least one GPU")
    if v["redis_memory_gb"] < 1:
        raise InfraConfigError(f"{k('redisMemoryGb')}: at least 1 GB")
    if 0 < v["lake_delete_days"] <= v["lake_nearline_days"]:
        raise InfraConfigError(
            f"{k('lakeDeleteDays')}: {v['lake_delete_days']} must be 0 (keep) or more than {k('lakeNearlineDays')}"
        )
    if not v["cluster_location"].startswith(v["region"]):
        raise InfraConfigError(
            f"{k('clusterLocation')}: {v['cluster_location']!r} is neither gcp:region {v['region']!r} nor one of its zones"
        )
    for zone_key in ("nodeZones", "gpuZones"):
        for zone in v[_snake(zone_key)]:
            if not zone.startswith(f"{v['region']}-"):
                raise InfraConfigError(f"{k(zone_key)}: {zone!r} is not a zone of gcp:region {v['region']!r}")

    ranges = {}
    for cidr_key in ("subnetCidr", "podsCidr", "servicesCidr", "masterCidr", "proxyOnlyCidr", "privateServicesCidr"):
        ranges[cidr_key] = _network(cidr_key, v[_snake(cidr_key)])
    if ranges["masterCidr"].prefixlen != 28:
        raise InfraConfigError(f"{k('masterCidr')}: GKE's control plane range is a /28, got {v['master_cidr']!r}")
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if ranges[a].overlaps(ranges[b]):
                raise InfraConfigError(f"{k(b)}: {v[_snake(b)]} overlaps {k(a)} ({v[_snake(a)]})")
    for cidr in v["master_authorized_networks"]:
        _network("masterAuthorizedNetworks", cidr)

    if not v["host_mlflow"] and v["mlflow_tracking_uri"] == IN_CLUSTER_MLFLOW:
        raise InfraConfigError(
            f"{k('mlflowTrackingUri')}: this stack does not run MLflow ({k('hostMlflow')} is false); "
            "set the URL at which the MLflow of the stack that does is reachable"
        )
    if v["host_argocd"] and v["argocd_service_account"]:
        raise InfraConfigError(
            f"{k('argocdServiceAccount')}: set on the stacks Argo CD manages from elsewhere, not on Argo CD's own"
        )
    argocd_home = str(root_application()["spec"]["destination"]["name"])
    if v["host_argocd"] and v["environment"] != argocd_home:
        raise InfraConfigError(
            f"{k('hostArgocd')}: Argo CD runs in the {argocd_home!r} cluster (gitops/apps/root.yaml's destination), "
            f"and this stack is {v['environment']!r}"
        )
    if v["staging_stack"] and not v["host_argocd"]:
        raise InfraConfigError(
            f"{k('stagingStack')}: only the stack that runs Argo CD ({k('hostArgocd')}) registers clusters"
        )


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InfraConfigError(f"{_Keys.name(key)}: {value!r} is not one of {', '.join(allowed)}")


def _network(key: str, cidr: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr)
    except ValueError as err:
        raise InfraConfigError(f"{_Keys.name(key)}: {cidr!r} is not an IPv4 CIDR ({err})") from None


class _Keys:
    """Typed getters that name the full key in every error."""

    def __init__(self, conf: pulumi.Config) -> None:
        self.conf = conf

    @staticmethod
    def name(key: str) -> str:
        return f"{PROJECT_NAMESPACE}:{key}"

    def text(self, key: str, default: str) -> str:
        value = self.conf.get(key)
        return default if value is None else value.strip()

    def one_of(self, key: str, value: str, allowed: tuple[str, ...]) -> None:
        _one_of(key, value, allowed)

    def count(self, key: str, default: int) -> int:
        raw = self.conf.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InfraConfigError(f"{self.name(key)}: {raw!r} is not a whole number") from None
        if value < 0:
            raise InfraConfigError(f"{self.name(key)}: {value} is negative")
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self.conf.get(key)
        if raw is None:
            return default
        if raw.lower() not in ("true", "false"):
            raise InfraConfigError(f"{self.name(key)}: {raw!r} is not true or false")
        return raw.lower() == "true"

    def strings(self, key: str) -> tuple[str, ...]:
        raw = self.conf.get(key)
        if raw is None:
            return ()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InfraConfigError(f"{self.name(key)}: expected a list of strings, got {raw!r}")
        return tuple(value)

    def secret(self, key: str) -> pulumi.Output[str]:
        value = self.conf.get_secret(key)
        return value if value is not None else pulumi.Output.secret("")
