"""A rich progress display around the pipeline runner (the runner itself stays UI-free)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from reco.pipeline import RunContext, Step, latest_event_date, run_pipeline, select_steps
from reco.settings import Settings


def run_with_progress(
    settings: Settings, day: dt.date | None, steps: Sequence[str] | None, console: Console, *, catch_up: bool = True
) -> RunContext:
    """Run the pipeline showing one bar over the steps and a line per finished step (and per catch-up)."""
    day = day or latest_event_date(settings)
    selected = select_steps(steps)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"pipeline {day}", total=len(selected))

        # Catch-up days are shown as one line per kind of work ("ingest 2026-11-01..2026-11-14 (14 days)").
        caught: list[tuple[str, list[dt.date]]] = []
        started = time.perf_counter()

        def flush_catch_up() -> None:
            for what, days in caught:
                progress.console.print(f"  [green]✓[/] catch-up   {what} {_days(days)}")
            if caught:
                progress.console.print(f"  [green]✓[/] catch-up   {time.perf_counter() - started:7.2f}s")
            caught.clear()

        def on_catch_up(what: str, when: dt.date) -> None:
            if caught and caught[-1][0] == what:
                caught[-1][1].append(when)
            else:
                caught.append((what, [when]))
            progress.update(task, description=f"pipeline {day}: catch-up {what} {when}")

        def on_event(step: Step, what: str, seconds: float) -> None:
            flush_catch_up()
            if what == "start":
                progress.update(task, description=f"pipeline {day}: {step.name}")
            elif what == "done":
                progress.console.print(f"  [green]✓[/] {step.name:<10} {seconds:7.2f}s")
                progress.advance(task)
            elif what == "retry":
                progress.console.print(f"  [yellow]↻[/] {step.name:<10} failed after {seconds:.2f}s, retrying")
            elif what == "failed":
                progress.console.print(f"  [red]✗[/] {step.name:<10} failed after {seconds:.2f}s")

        return run_pipeline(
            settings, day, [s.name for s in selected], on_event, catch_up=catch_up, on_catch_up=on_catch_up
        )


def _days(days: Sequence[dt.date]) -> str:
    """``2026-11-01..2026-11-14 (14 days)``, or the single day."""
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"
