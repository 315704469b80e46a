"""The whole stack, composed: network -> data stores -> node identities -> cluster -> node pools -> workload
identities -> what the cluster needs before Argo CD takes over. ``build`` declares it all from a validated
``InfraConfig`` and returns the stack outputs; ``main`` is what ``pulumi up`` runs (infra/__main__.py)."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.bootstrap import IN_CLUSTER, BootstrapArgs, ClusterBootstrap, ManagedCluster
from infra.cluster import GkeCluster, GkeClusterArgs
from infra.config import InfraConfig, load, platform_names, root_application
from infra.datastores import MLFLOW_DB_USER, Datastores, DatastoresArgs
from infra.identity import Identity, IdentityArgs, workloads
from infra.network import Network, NetworkArgs
from infra.nodepools import NodeIdentities, NodeIdentitiesArgs, NodePools, NodePoolsArgs

# The namespaces gitops/apps deploys to in every cluster, and in the one that runs Argo CD and MLflow. Pulumi
# creates them first because its Secrets go there (the Applications' CreateNamespace then finds them).
NAMESPACES = ("argo", "argo-rollouts", "monitoring")


def build(cfg: InfraConfig) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs by name."""
    platform = platform_names()
    labels = cfg.labels

    network = Network(
        "reco",
        NetworkArgs(
            region=cfg.region,
            subnet_cidr=cfg.subnet_cidr,
            pods_cidr=cfg.pods_cidr,
            services_cidr=cfg.services_cidr,
            proxy_only_cidr=cfg.proxy_only_cidr,
            private_services_cidr=cfg.private_services_cidr,
            labels=labels,
        ),
    )
    data = Datastores(
        "reco",
        DatastoresArgs(
            project=cfg.project,
            region=cfg.region,
            network=network.vpc.id,
            private_services_range=network.private_services_range.name,
            private_services=network.private_services,
            labels=labels,
            redis_tier=cfg.redis_tier,
            redis_memory_gb=cfg.redis_memory_gb,
            redis_version=cfg.redis_version,
            host_mlflow=cfg.host_mlflow,
            sql_tier=cfg.sql_tier,
            sql_high_availability=cfg.sql_high_availability,
            sql_point_in_time_recovery=cfg.sql_point_in_time_recovery,
            sql_backup_retention=cfg.sql_backup_retention,
            deletion_protection=cfg.deletion_protection,
            internal_domain=cfg.internal_domain,
            lake_nearline_days=cfg.lake_nearline_days,
            lake_delete_days=cfg.lake_delete_days,
            noncurrent_version_days=cfg.noncurrent_version_days,
            registry_name=cfg.registry_name,
            keep_image_versions=cfg.keep_image_versions,
            untagged_image_days=cfg.untagged_image_days,
            events_topic=cfg.events_topic,
        ),
    )
    nodes = NodeIdentities("reco-nodes", NodeIdentitiesArgs(project=cfg.project, registry=data.registry))
    cluster = GkeCluster(
        "reco",
        GkeClusterArgs(
            name=cfg.cluster_name,
            location=cfg.cluster_location,
            node_zones=cfg.node_zones,
            network=network.vpc.id,
            subnetwork=network.subnet.id,
            master_cidr=cfg.master_cidr,
            master_authorized_networks=cfg.master_authorized_networks,
            workload_pool=cfg.workload_pool,
            release_channel=cfg.release_channel,
            maintenance_start=cfg.maintenance_start,
            maintenance_end=cfg.maintenance_end,
            maintenance_recurrence=cfg.maintenance_recurrence,
            deletion_protection=cfg.deletion_protection,
            bootstrap_node_service_account=nodes.accounts["general"].email,
            labels=labels,
        ),
    )
    gpu = cfg.gpu_pool
    pools = NodePools(
        "reco",
        NodePoolsArgs(
            cluster=cluster.name,
            location=cfg.cluster_location,
            node_zones=cfg.node_zones,
            gpu_zones=cfg.gpu_zones,
            general_service_account=nodes.accounts["general"].email,
            gpu_service_account=nodes.accounts["gpu"].email,
            general_labels=cfg.cpu_pool["labels"],
            gpu_labels=gpu["labels"],
            gpu_taint=gpu["taint"],
            system_machine_type=cfg.system_machine_type,
            system_min_nodes=cfg.system_min_nodes,
            system_max_nodes=cfg.system_max_nodes,
            gpu_machine_type=cfg.gpu_machine_type,
            gpu_accelerator=cfg.gpu_accelerator,
            gpu_count=cfg.gpu_count,
            gpu_min_nodes=cfg.gpu_min_nodes,
            gpu_max_nodes=cfg.gpu_max_nodes,
            gpu_spot=cfg.gpu_spot,
            gpu_driver_version=cfg.gpu_driver_version,
            resource_labels=labels,
        ),
    )
    identity = Identity(
        "reco",
        IdentityArgs(
            project=cfg.project,
            workload_pool=cfg.workload_pool,
            workloads=workloads(platform, host_mlflow=cfg.host_mlflow, host_argocd=cfg.host_argocd),
            buckets=data.buckets,
            events_topic=data.events_topic,
            db_secret=data.mlflow_db_secret,
            argocd_service_account=cfg.argocd_service_account,
        ),
    )

    managed: list[ManagedCluster] = []
    root: dict[str, Any] | None = None
    if cfg.host_argocd:
        managed.append(ManagedCluster(name=cfg.environment, server=IN_CLUSTER))
        if cfg.staging_stack:
            staging = pulumi.StackReference("staging", stack_name=cfg.staging_stack)
            managed.append(
                ManagedCluster(
                    name="staging",
                    server=staging.require_output("cluster_endpoint").apply(lambda host: f"https://{host}"),
                    ca_certificate=staging.require_output("cluster_ca_certificate"),
                )
            )
        else:
            pulumi.log.warn(
                "reco-articles:stagingStack is empty: Argo CD knows no cluster named 'staging', and the staging "
                "Applications of gitops/apps stay unsynced until it is set"
            )
        root = root_application()
        root = {**root, "spec": {**root["spec"], "source": {**root["spec"]["source"], "repoURL": cfg.gitops_repo}}}
    namespaces = [str(platform["namespace"]), *NAMESPACES]
    if cfg.host_mlflow:
        namespaces.append("mlflow")
    if cfg.host_argocd:
        namespaces.append("argocd")
    bootstrap = ClusterBootstrap(
        "reco",
        BootstrapArgs(
            cluster_name=cluster.name,
            endpoint=cluster.endpoint,
            ca_certificate=cluster.ca_certificate,
            platform=platform,
            namespaces=namespaces,
            lake_bucket=data.buckets["lake"].name,
            redis_url=data.redis_url,
            redis_ca_certificate=data.server_ca_certs,
            mlflow_tracking_uri=cfg.mlflow_tracking_uri,
            argo_server_url=cfg.argo_server_url,
            argo_ui_url=cfg.argo_ui_url,
            gitops_repo=cfg.gitops_repo,
            events_topic=data.events_topic.id,
            argo_server_token=cfg.argo_server_token,
            alert_webhook_url=cfg.alert_webhook_url,
            gitops_token=cfg.gitops_token,
            rollouts_notification_token=cfg.rollouts_notification_token,
            mlflow_db_password=data.mlflow_db_password,
            mlflow_db_user=MLFLOW_DB_USER,
            argocd_service_account=identity.emails.get("argocd"),
            managed_clusters=managed,
            root_application=root,
            external_argocd=cfg.argocd_service_account,
            nodes=[pools],
        ),
    )

    outputs: dict[str, Any] = {
        "environment": cfg.environment,
        "cluster_name": cluster.name,
        "cluster_endpoint": cluster.endpoint,
        "cluster_ca_certificate": cluster.ca_certificate,
        "kubeconfig": bootstrap.kubeconfig,
        "nat_ip": network.nat_address.address,
        "registry_url": data.registry_url,
        "redis_host": data.redis.host,
        "redis_port": data.redis.port,
        "redis_server_ca_certs": data.server_ca_certs,
        "events_topic": data.events_topic.id,
        "service_accounts": identity.emails,
        **{f"{kind}_bucket": bucket.name for kind, bucket in data.buckets.items()},
    }
    if data.sql is not None and data.mlflow_db_secret is not None:
        outputs["sql_connection_name"] = data.sql.connection_name
        outputs["mlflow_db_password_secret"] = data.mlflow_db_secret.id
    return outputs


def main() -> None:
    """``pulumi up``: validate the config (nothing is declared when it is wrong), then declare and export."""
    cfg = load()
    for name, value in build(cfg).items():
        pulumi.export(name, value)
