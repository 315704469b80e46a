"""A rich progress display around the pipeline runner (the runner itself stays UI-free)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from reco.pipeline import RunContext, Step, latest_event_date, run_pipeline, select_steps
from reco.settings import Settings


def run_with_progress(
    settings: Settings, day: dt.date | None, steps: Sequence[str] | None, console: Console
) -> RunContext:
    """Run the pipeline showing one bar over the steps and a line per finished step."""
    day = day or latest_event_date(settings)
    selected = select_steps(steps)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"pipeline {day}", total=len(selected))

        def on_event(step: Step, what: str, seconds: float) -> None:
            if what == "start":
                progress.update(task, description=f"pipeline {day}: {step.name}")
            elif what == "done":
                progress.console.print(f"  [green]✓[/] {step.name:<10} {seconds:7.2f}s")
                progress.advance(task)
            elif what == "retry":
                progress.console.print(f"  [yellow]↻[/] {step.name:<10} failed after {seconds:.2f}s, retrying")
            elif what == "failed":
                progress.console.print(f"  [red]✗[/] {step.name:<10} failed after {seconds:.2f}s")

        return run_pipeline(settings, day, [s.name for s in selected], on_event)
