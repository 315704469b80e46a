"""``python -m workflows`` (also ``reco workflows``): render, check and backfill the Argo workflows."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

app = typer.Typer(help="The daily pipeline on Argo Workflows (Hera).", no_args_is_help=True)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "gitops" / "workflows"


@app.command("render")
def render_command(
    out: Annotated[Path, typer.Option(help="Folder to write the YAML to.")] = DEFAULT_OUT,
) -> None:
    """Write the WorkflowTemplate, the CronWorkflow and the service account as YAML (committed to gitops/)."""
    from workflows.render import render

    for path in render(out):
        typer.echo(f"wrote {path}")


@app.command("check")
def check_command(
    folder: Annotated[Path, typer.Argument(help="Folder of rendered YAML.")] = DEFAULT_OUT,
) -> None:
    """The strict check of rendered workflows (unknown keys, references, parameters, DAG order)."""
    from workflows.check import roundtrip_differences, step_problems, structure_problems

    problems: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj:
                continue
            problems += [f"{path.name}: {p}" for p in roundtrip_differences(obj)]
            if obj.get("kind") in ("WorkflowTemplate", "Workflow"):
                problems += [f"{path.name}: {p}" for p in structure_problems(obj)]
            if obj.get("kind") == "WorkflowTemplate" and obj["metadata"]["name"] == "reco-pipeline":
                problems += [f"{path.name}: {p}" for p in step_problems(obj)]
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{folder}: ok")


@app.command("backfill")
def backfill_command(
    start: Annotated[dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First date (UTC).")],
    end: Annotated[dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last date (UTC), inclusive.")],
    parallelism: Annotated[int, typer.Option(min=1, help="Dates running at once (started oldest first).")] = 1,
    train_device: Annotated[str, typer.Option(help="gpu or cpu.")] = "gpu",
    submit: Annotated[bool, typer.Option(help="Submit to the Argo Server (RECO_ARGO_SERVER_URL, RECO_ARGO_TOKEN).")] = False,
) -> None:
    """Print (or submit) one Workflow that runs the daily DAG for every date of a range."""
    from workflows.daily import build_backfill

    if end < start:
        typer.echo(f"error: --from {start.date()} is after --to {end.date()}", err=True)
        raise typer.Exit(1)
    if train_device not in ("gpu", "cpu"):
        typer.echo(f"error: --train-device must be gpu or cpu, got {train_device!r}", err=True)
        raise typer.Exit(1)
    workflow = build_backfill(start.date(), end.date(), parallelism=parallelism, train_device=train_device)
    if not submit:
        typer.echo(yaml.safe_dump(workflow.to_dict(), sort_keys=False, width=120))
        return
    from hera.workflows import WorkflowsService

    from reco.settings import get_settings

    settings = get_settings()
    if not settings.argo_server_url:
        typer.echo("error: RECO_ARGO_SERVER_URL is empty: where should the backfill be submitted?", err=True)
        raise typer.Exit(1)
    workflow.workflows_service = WorkflowsService(
        host=settings.argo_server_url, token=settings.argo_token or None, namespace=settings.argo_namespace
    )
    created = workflow.create()
    typer.echo(f"submitted {created.metadata.name}")


def main() -> None:  # pragma: no cover - module entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
