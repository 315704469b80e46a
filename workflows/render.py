"""Rendering: the Hera objects as the YAML committed to ``gitops/workflows/`` (a golden test compares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workflows.abort import build_abort, event_binding, notifier_rbac
from workflows.daily import build_cron, build_pipeline
from workflows.names import platform

HEADER = "# Rendered by `reco workflows render` from workflows/ (Hera) — do not edit by hand.\n"


def service_account() -> dict[str, Any]:
    """The pipeline pods' Kubernetes service account, bound to its Google one through Workload Identity,
    and the permissions Argo's executor needs to report task results."""
    names = platform()
    sa = names.pipeline_service_account
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": sa,
            "namespace": names.namespace,
            # The overlay replaces PROJECT_ID (kustomize) with the GCP project infra created it in.
            "annotations": {"iam.gke.io/gcp-service-account": f"{sa}@PROJECT_ID.iam.gserviceaccount.com"},
        },
    }


def executor_rbac() -> list[dict[str, Any]]:
    names = platform()
    sa = names.pipeline_service_account
    role = f"{sa}-executor"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role, "namespace": names.namespace},
            "rules": [
                {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": names.namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": names.namespace}],
        },
    ]


def documents() -> dict[str, list[dict[str, Any]]]:
    """File name -> the Kubernetes objects it holds, as plain dicts."""
    return {
        "reco-pipeline.yaml": [build_pipeline().to_dict()],
        "reco-daily.yaml": [build_cron().to_dict()],
        "serviceaccount.yaml": [service_account(), *executor_rbac()],
        "reco-gitops-abort.yaml": [build_abort().to_dict(), event_binding(), *notifier_rbac()],
        "kustomization.yaml": [
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["serviceaccount.yaml", "reco-pipeline.yaml", "reco-daily.yaml", "reco-gitops-abort.yaml"],
            }
        ],
    }


def dump(objects: list[dict[str, Any]]) -> str:
    return HEADER + "---\n".join(yaml.safe_dump(o, sort_keys=False, width=120) for o in objects)


def render(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objects in documents().items():
        path = out / name
        path.write_text(dump(objects))
        written.append(path)
    return written
