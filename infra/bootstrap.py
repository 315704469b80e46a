"""What the cluster must hold before Argo CD can take over, and Argo CD itself where this stack runs it.

Pulumi creates here only what gitops/ cannot: namespaces that receive infra's Secrets, the Secrets and ConfigMap
made from stack outputs and config secrets (names and keys from platform.yaml, or as gitops/apps references
them: grafana-admin, mlflow-db), the workdir's PersistentVolume on the lake bucket (GCS FUSE CSI driver) and its
claim, and, on the stack that runs it, Argo CD (Helm), the clusters it manages (cluster Secrets ``prod``
and ``staging``, the names gitops/apps deploys to) and the root Application of gitops/apps/root.yaml. Argo CD
then installs everything else (Argo Rollouts, Argo Workflows, kube-prometheus-stack, MLflow, the API, the
workflows) from git, at the chart versions pinned there; this module pins only Argo CD's.

(Not ``platform.py``: ``infra/`` is Pulumi's program directory and thus on ``sys.path``, where that name would
shadow the standard library's ``platform``.)"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

# The charts Pulumi installs: chart -> (repository, version). gitops/apps pins every other chart; none is in both.
HELM_CHARTS: dict[str, tuple[str, str]] = {
    "argo-cd": ("https://argoproj.github.io/argo-helm", "10.1.1"),  # Argo CD v3.4.4
}
ARGOCD_NAMESPACE = "argocd"
# Argo CD's in-cluster address; the cluster Secret gives it the name gitops/apps uses.
IN_CLUSTER = "https://kubernetes.default.svc"
# Since Argo CD 1.8 an Application's health is not computed by default: without this, sync waves of the
# app-of-apps would not wait for each child to be Healthy (gitops/README.md, "Created outside this tree").
APPLICATION_HEALTH_LUA = """\
hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
"""
# The GCS FUSE volume's nominal size (a bucket has none; Kubernetes requires one).
WORKDIR_CAPACITY = "5Ti"
# The pipeline and API images run as uid/gid 10001 (Dockerfile, Dockerfile.pipeline).
WORKDIR_UID = 10001


@dataclass
class ManagedCluster:
    """A cluster Argo CD deploys to, by the name gitops/apps gives it."""

    name: str
    server: pulumi.Input[str]  # https://<endpoint>, or IN_CLUSTER
    ca_certificate: pulumi.Input[str] | None = None  # base64 PEM; None for the in-cluster one


@dataclass
class BootstrapArgs:
    cluster_name: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    ca_certificate: pulumi.Input[str]
    platform: Mapping[str, Any]  # platform.yaml
    namespaces: Sequence[str]
    lake_bucket: pulumi.Input[str]
    redis_url: pulumi.Input[str]
    redis_ca_certificate: pulumi.Input[str]
    mlflow_tracking_uri: str
    argo_server_url: str
    argo_ui_url: str
    gitops_repo: str
    events_topic: pulumi.Input[str]  # projects/<project>/topics/<name>
    argo_server_token: pulumi.Input[str]
    alert_webhook_url: pulumi.Input[str]
    gitops_token: pulumi.Input[str]
    rollouts_notification_token: pulumi.Input[str]
    mlflow_db_password: pulumi.Input[str] | None = None  # where this stack runs MLflow
    mlflow_db_user: str = "mlflow"
    argocd_service_account: pulumi.Input[str] | None = None  # where this stack runs Argo CD: its GSA
    managed_clusters: Sequence[ManagedCluster] = field(default_factory=list)
    root_application: Mapping[str, Any] | None = None  # gitops/apps/root.yaml, where this stack runs Argo CD
    # Argo CD of another stack that manages this cluster (its Google service account's email).
    external_argocd: str = ""
    nodes: Sequence[pulumi.Resource] = ()  # the node pools: nothing is applied before there are nodes


def kubeconfig(
    cluster_name: pulumi.Input[str], endpoint: pulumi.Input[str], ca_certificate: pulumi.Input[str]
) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin (the caller's gcloud credentials)."""

    def render(values: list[Any]) -> str:
        name, server, ca = values
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": name, "cluster": {"server": f"https://{server}", "certificate-authority-data": ca}}
                ],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
                "users": [
                    {
                        "name": name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "gke-gcloud-auth-plugin",
                                "installHint": "gcloud components install gke-gcloud-auth-plugin",
                                "provideClusterInfo": True,
                                "interactiveMode": "IfAvailable",
                            }
                        },
                    }
                ],
            },
            indent=2,
        )

    return pulumi.Output.secret(pulumi.Output.all(cluster_name, endpoint, ca_certificate).apply(render))


class ClusterBootstrap(pulumi.ComponentResource):
    """Namespaces, infra's Secrets/ConfigMap, the workdir volume; Argo CD and its root Application."""

    def __init__(self, name: str, args: BootstrapArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:ClusterBootstrap", name, None, opts)
        self.kubeconfig = kubeconfig(args.cluster_name, args.endpoint, args.ca_certificate)
        # Every Kubernetes object goes through this provider: it waits for the nodes (Argo CD's pods need some).
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.nodes)),
        )
        self._name = name
        self._args = args

        self.namespaces = {
            ns: k8s.core.v1.Namespace(
                f"{name}-ns-{ns}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={"app.kubernetes.io/part-of": "reco-articles"}),
                opts=self._opts(),
            )
            for ns in args.namespaces
        }
        self._reco_objects()
        self._platform_secrets()
        self._workdir()
        self.argocd: k8s.helm.v3.Release | None = None
        if args.argocd_service_account is not None:
            self._argocd()
        if args.external_argocd:
            # Argo CD (another cluster's) installs charts with CRDs and cluster roles here: cluster-admin,
            # granted to its Google identity (GKE maps the service account's email to a Kubernetes user).
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-external-argocd",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="argocd-manager"),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
                ),
                subjects=[
                    k8s.rbac.v1.SubjectArgs(
                        kind="User", name=args.external_argocd, api_group="rbac.authorization.k8s.io"
                    )
                ],
                opts=self._opts(),
            )
        self.register_outputs({"kubeconfig": self.kubeconfig})

    def _opts(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=list(depends_on))

    def _secret(
        self, resource: str, namespace: str, secret_name: str, data: Mapping[str, pulumi.Input[str]]
    ) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{resource}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=namespace),
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=self._opts(self.namespaces[namespace]),
        )

    def _reco_objects(self) -> None:
        """Namespace reco: what the API, the workflows and the abort path read (platform.yaml's names)."""
        a, p = self._args, self._args.platform
        ns = str(p["namespace"])
        redis, argo, alerts, gitops = (p["secrets"][k] for k in ("redis", "argo", "alerts", "gitops"))
        self._secret(
            "reco-redis", ns, redis["name"], {redis["url_key"]: a.redis_url, redis["ca_key"]: a.redis_ca_certificate}
        )
        self._secret(
            "reco-argo-server",
            ns,
            argo["name"],
            {argo["url_key"]: a.argo_server_url, argo["token_key"]: a.argo_server_token},
        )
        self._secret("reco-alerts", ns, alerts["name"], {alerts["webhook_key"]: a.alert_webhook_url})
        self._secret("reco-gitops", ns, gitops["name"], {gitops["token_key"]: a.gitops_token})
        config = p["config_maps"]["pipeline"]
        k8s.core.v1.ConfigMap(
            f"{self._name}-reco-pipeline-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=config["name"], namespace=ns),
            data={
                config["mlflow_key"]: a.mlflow_tracking_uri,
                config["argo_ui_key"]: a.argo_ui_url,
                config["gitops_repo_key"]: a.gitops_repo,
                config["events_topic_key"]: a.events_topic,
            },
            opts=self._opts(self.namespaces[ns]),
        )

    def _platform_secrets(self) -> None:
        """The Secrets the charts of gitops/apps expect to exist (never in git)."""
        a, p = self._args, self._args.platform
        notifications = p["secrets"]["rollouts_notifications"]
        self._secret(
            "rollouts-notification-secret",
            notifications["namespace"],
            notifications["name"],
            {notifications["token_key"]: a.rollouts_notification_token},
        )
        # kube-prometheus-stack's grafana.admin.existingSecret (the chart's default keys).
        grafana_password = random.RandomPassword(
            f"{self._name}-grafana-admin", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self._secret(
            "grafana-admin",
            "monitoring",
            "grafana-admin",
            {"admin-user": "admin", "admin-password": grafana_password.result},
        )
        if a.mlflow_db_password is not None:
            # gitops/apps/mlflow.yaml: backendStore.existingDatabaseSecret (usernameKey, passwordKey).
            self._secret(
                "mlflow-db", "mlflow", "mlflow-db", {"username": a.mlflow_db_user, "password": a.mlflow_db_password}
            )

    def _workdir(self) -> None:
        """The lake bucket as a ReadWriteMany volume (GKE's Cloud Storage FUSE CSI driver), claimed in reco."""
        a, p = self._args, self._args.platform
        ns, claim = str(p["namespace"]), str(p["workdir"]["claim"])
        volume = k8s.core.v1.PersistentVolume(
            f"{self._name}-workdir-pv",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=claim),
            spec=k8s.core.v1.PersistentVolumeSpecArgs(
                access_modes=["ReadWriteMany"],
                capacity={"storage": WORKDIR_CAPACITY},
                persistent_volume_reclaim_policy="Retain",
                # Static provisioning: "" keeps the default StorageClass away from this pair.
                storage_class_name="",
                claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=ns, name=claim),
                mount_options=[
                    # The Pub/Sub subscription writes objects under prefixes no "folder" object stands for.
                    "implicit-dirs",
                    f"uid={WORKDIR_UID}",
                    f"gid={WORKDIR_UID}",
                    "file-mode=664",
                    "dir-mode=775",
                ],
                csi=k8s.core.v1.CSIPersistentVolumeSourceArgs(
                    driver="gcsfuse.csi.storage.gke.io",
                    volume_handle=a.lake_bucket,
                ),
            ),
            opts=self._opts(),
        )
        k8s.core.v1.PersistentVolumeClaim(
            f"{self._name}-workdir-pvc",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=claim, namespace=ns),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"],
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": WORKDIR_CAPACITY}),
                storage_class_name="",
                volume_name=claim,
            ),
            opts=self._opts(volume, self.namespaces[ns]),
        )

    def _argocd(self) -> None:
        """Argo CD (Helm), the clusters it deploys to, and the root Application: from here on git rules."""
        a = self._args
        annotations = {"iam.gke.io/gcp-service-account": a.argocd_service_account}
        repo, version = HELM_CHARTS["argo-cd"]
        self.argocd = k8s.helm.v3.Release(
            f"{self._name}-argocd",
            k8s.helm.v3.ReleaseArgs(
                name="argocd",
                chart="argo-cd",
                version=version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo),
                namespace=ARGOCD_NAMESPACE,
                create_namespace=False,
                atomic=True,
                timeout=900,
                values={
                    # No SSO is configured: no Dex.
                    "dex": {"enabled": False},
                    "configs": {
                        "cm": {"resource.customizations.health.argoproj.io_Application": APPLICATION_HEALTH_LUA}
                    },
                    # Workload Identity: the controller and the server reach other GKE clusters as this GSA
                    # (the cluster Secrets' argocd-k8s-auth gcp).
                    "controller": {"serviceAccount": {"annotations": annotations}},
                    "server": {"serviceAccount": {"annotations": annotations}},
                },
            ),
            opts=self._opts(self.namespaces[ARGOCD_NAMESPACE]),
        )
        clusters = []
        for cluster in a.managed_clusters:
            if cluster.ca_certificate is None:
                config: pulumi.Input[str] = json.dumps({"tlsClientConfig": {"insecure": False}})
            else:
                config = pulumi.Output.from_input(cluster.ca_certificate).apply(
                    lambda ca: json.dumps(
                        {
                            "execProviderConfig": {
                                "command": "argocd-k8s-auth",
                                "args": ["gcp"],
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                            },
                            "tlsClientConfig": {"insecure": False, "caData": ca},
                        }
                    )
                )
            clusters.append(
                k8s.core.v1.Secret(
                    f"{self._name}-argocd-cluster-{cluster.name}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=f"cluster-{cluster.name}",
                        namespace=ARGOCD_NAMESPACE,
                        labels={"argocd.argoproj.io/secret-type": "cluster"},
                    ),
                    type="Opaque",
                    string_data={
                        "name": pulumi.Output.secret(cluster.name),
                        "server": pulumi.Output.secret(cluster.server),
                        "config": pulumi.Output.secret(config),
                    },
                    opts=self._opts(self.argocd),
                )
            )
        if a.root_application is not None:
            root = a.root_application
            k8s.apiextensions.CustomResource(
                f"{self._name}-root-application",
                api_version=root["apiVersion"],
                kind=root["kind"],
                metadata=root["metadata"],
                spec=root["spec"],
                opts=self._opts(self.argocd, *clusters),
            )
