"""What an aborted canary submits: ``reco-gitops-abort``, run by Argo Workflows when Argo Rollouts reports it.

The chain (see gitops/platform/argo-rollouts/notifications.yaml and the README's SRE section):

1. Argo Rollouts aborts the canary (a Failed analysis) and scales the canary down; stable serves everything.
2. Its notification ``on-rollout-aborted`` POSTs ``{rollout, namespace, modelVersion, env}`` to Argo Server's
   events API (``/api/v1/events/<namespace>/rollout-aborted``) with a token of ``NOTIFIER``.
3. The WorkflowEventBinding ``reco-rollout-aborted`` matches that event and submits this template with the
   payload's ``env`` and ``modelVersion``.
4. The pod runs ``reco gitops abort``: it clones ``RECO_GITOPS_REPO``, commits the revert of the release file
   (prod: on a branch for a pull request) and pushes it; tags the registry version ``canary=aborted`` and moves
   ``champion`` back. Repeating it changes nothing more (a notification delivered twice).
"""

from __future__ import annotations

from typing import Any

from hera.workflows import Container, EmptyDirVolume, Parameter, WorkflowTemplate

from workflows.daily import (
    Sizing,
    _container_security,
    _env,
    _pod_security,
    _resources,
    retry_unless_clear_error,
)
from workflows.names import platform

ABORT_TEMPLATE = "reco-gitops-abort"
EVENT_BINDING = "reco-rollout-aborted"
DISCRIMINATOR = "rollout-aborted"
ROLLOUT = "reco-api"
NOTIFIER = "reco-rollouts-notifier"  # the service account whose token the notification sends


def build_abort() -> WorkflowTemplate:
    names = platform()
    with WorkflowTemplate(
        name=ABORT_TEMPLATE,
        namespace=names.namespace,
        entrypoint="abort",
        arguments=[
            Parameter(name="env", description="Environment whose canary was aborted (an overlay: staging, prod)"),
            Parameter(name="model-version", description="Registry version the aborted canary served"),
        ],
        service_account_name=names.pipeline_service_account,
        security_context=_pod_security(),
        active_deadline_seconds=1800,
        labels={"app.kubernetes.io/part-of": "reco-articles"},
    ) as template:
        Container(
            name="abort",
            image=names.pipeline_image,
            command=["reco"],
            args=[
                "gitops", "abort",
                "--env", "{{workflow.parameters.env}}",
                "--model-version", "{{workflow.parameters.model-version}}",
            ],
            env=_env(gitops=True),
            resources=_resources(Sizing("200m", "512Mi", 600)),
            security_context=_container_security(),
            volumes=[EmptyDirVolume(name="tmp", mount_path="/tmp")],
            active_deadline_seconds=600,
            node_selector=dict(names.cpu_pool["labels"]),
            # A push refused by a concurrent commit, MLflow unreachable: retried (exit 75); a clear error is not.
            retry_strategy=retry_unless_clear_error(5, first="30s", cap="15m"),
        )
    return template


def event_binding() -> dict[str, Any]:
    """Argo Workflows' WorkflowEventBinding (no Hera model): the abort event -> ``reco-gitops-abort``."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowEventBinding",
        "metadata": {"name": EVENT_BINDING, "namespace": platform().namespace},
        "spec": {
            "event": {
                "selector": (
                    f'discriminator == "{DISCRIMINATOR}" && payload.rollout == "{ROLLOUT}" '
                    '&& payload.modelVersion matches "^[0-9]+$" && payload.env matches "^[a-z0-9-]+$"'
                )
            },
            "submit": {
                "workflowTemplateRef": {"name": ABORT_TEMPLATE},
                "arguments": {
                    "parameters": [
                        {"name": "env", "valueFrom": {"event": "payload.env"}},
                        {"name": "model-version", "valueFrom": {"event": "payload.modelVersion"}},
                    ]
                },
            },
        },
    }


def notifier_rbac() -> list[dict[str, Any]]:
    """The notifier's service account and what Argo Server checks before submitting on its event: list the
    bindings, get the template, create the workflow — nothing else, in this namespace only."""
    namespace = platform().namespace
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NOTIFIER, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": NOTIFIER, "namespace": namespace},
            "rules": [
                {"apiGroups": ["argoproj.io"], "resources": ["workfloweventbindings"], "verbs": ["list"]},
                {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"],
                 "resourceNames": [ABORT_TEMPLATE]},
                {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": NOTIFIER, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NOTIFIER},
            "subjects": [{"kind": "ServiceAccount", "name": NOTIFIER, "namespace": namespace}],
        },
    ]
